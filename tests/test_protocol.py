"""The wire protocol: the Python side of the shared vectors, and what decode_request refuses."""

import json
import pathlib

import pytest

from forcepw import protocol

VECTORS = json.loads((pathlib.Path(__file__).parent / "vectors.json").read_text("utf-8"))


@pytest.mark.parametrize("vector", VECTORS["requests"], ids=lambda v: v["name"])
def test_python_encodes_each_request_vector_to_the_exact_wire_bytes(vector):
    make = (protocol.check_login_request if vector["op"] == protocol.OP_CHECK_LOGIN
            else protocol.password_changed_request)
    request = make(caller_uid=vector["caller_uid"], **vector["items"])
    assert protocol.encode(request) == vector["wire"].encode("utf-8")
    assert protocol.decode_request(vector["wire"].encode("utf-8")) == request


@pytest.mark.parametrize("vector", [v for v in VECTORS["replies"] if v["verdict"] is not None],
                         ids=lambda v: v["name"])
def test_python_reads_each_verdict_reply_vector(vector):
    reply = protocol.decode_reply(vector["wire"].encode("utf-8"))
    assert (reply["verdict"], reply["message"]) == (vector["verdict"], vector["message"])


@pytest.mark.parametrize("line, kind", [
    (b"not json\n", protocol.ERR_BAD_REQUEST),
    (b"[1,2]\n", protocol.ERR_BAD_REQUEST),
    (b'{"op":"drop_tables"}\n', protocol.ERR_BAD_REQUEST),
    (b'{"op":"check_login"}\n', protocol.ERR_BAD_REQUEST),
    (b'{"op":"check_login","user":7}\n', protocol.ERR_BAD_REQUEST),
    (b'{"op":"check_login","user":"a","caller_uid":"0"}\n', protocol.ERR_BAD_REQUEST),
    (b'{"op":"check_login","user":"a","caller_uid":true}\n', protocol.ERR_BAD_REQUEST),
    (b'{"op":"check_login","user":"' + b"a" * 1025 + b'"}\n', protocol.ERR_TOO_LARGE),
    (b'{"op":"call","function":1}\n', protocol.ERR_BAD_REQUEST),
    (b'{"op":"call","function":"f","args":{"a":1}}\n', protocol.ERR_BAD_REQUEST),
    (b'{"op":"call","function":"f","args":[]}\n', protocol.ERR_BAD_REQUEST),
    (b"\xff\xfe\n", protocol.ERR_BAD_REQUEST),
    (b'{"op":"call","function":"f","args":{"a":"' + b"x" * protocol.MAX_REQUEST_BYTES + b'"}}\n',
     protocol.ERR_TOO_LARGE),
])
def test_decode_request_refuses_malformed_requests_with_the_right_kind(line, kind):
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode_request(line)
    assert err.value.kind == kind


def test_every_function_documents_its_parameters():
    for name, spec in protocol.FUNCTIONS.items():
        assert spec.summary, name
        assert all(param and text for param, text in spec.params), name


def test_the_longest_login_message_fits_what_the_pam_module_reads():
    from forcepw.policy import login_message
    worst_reason = '"\\' * (protocol.MAX_REASON_BYTES // 2)  # each escaped to two bytes
    reply = protocol.encode(protocol.verdict_reply(protocol.VERDICT_CHANGE_REQUIRED,
                                                   login_message(worst_reason)))
    assert len(reply) <= protocol.MAX_PAM_REPLY_BYTES
    worst_reason = "\U0001F511" * (protocol.MAX_REASON_BYTES // 4)
    reply = protocol.encode(protocol.verdict_reply(protocol.VERDICT_CHANGE_REQUIRED,
                                                   login_message(worst_reason)))
    assert len(reply) <= protocol.MAX_PAM_REPLY_BYTES
