"""pam_forcepw/protocol.c speaks exactly the bytes of daemon/forcepw/protocol.py (tests/vectors.json).

protocol.c is built alone as a shared library into a temporary directory and called through ctypes.
FORCEPW_TEST_EXTRA_CFLAGS adds compiler flags, e.g. to run these vectors under ASan/UBSan:

    ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$(gcc -print-file-name=libasan.so) \
      $(gcc -print-file-name=libubsan.so)" \
      FORCEPW_TEST_EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
      python3 -m pytest tests/test_pam_protocol_vectors.py
"""

import ctypes
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors.json").read_text(encoding="utf-8"))
REPLY_BUFFER = 4097  # MAX_PAM_REPLY_BYTES + NUL: a decoded string is never longer than its source


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    out = tmp_path_factory.mktemp("pam_forcepw")
    subprocess.run(
        ["make", "-s", "-C", str(ROOT / "pam_forcepw"), f"OUT={out}",
         f"EXTRA_CFLAGS={os.environ.get('FORCEPW_TEST_EXTRA_CFLAGS', '')}",
         "libforcepw_protocol_test.so"],
        check=True,
    )
    lib = ctypes.CDLL(str(out / "libforcepw_protocol_test.so"))
    lib.forcepw_encode_request.restype = ctypes.c_ssize_t
    lib.forcepw_encode_request.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p] + [
        ctypes.c_char_p] * 5 + [ctypes.c_int]
    lib.forcepw_decode_reply.restype = ctypes.c_int
    lib.forcepw_decode_reply.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                         ctypes.c_char_p, ctypes.c_size_t,
                                         ctypes.c_char_p, ctypes.c_size_t]
    return lib


def encode(lib, op, items, caller_uid, size=65536):
    """-> the wire bytes, or None when the C encoder refuses."""
    buf = ctypes.create_string_buffer(size)
    fields = [None if items.get(k) is None else items[k].encode("utf-8")
              for k in ("user", "service", "rhost", "tty", "ruser")]
    n = lib.forcepw_encode_request(buf, size, op.encode(), *fields, caller_uid)
    return None if n < 0 else buf.raw[:n]


def decode(lib, wire, verdict_size=REPLY_BUFFER, message_size=REPLY_BUFFER):
    """-> (verdict, message) as str, or (None, None) when the C decoder refuses."""
    verdict = ctypes.create_string_buffer(verdict_size)
    message = ctypes.create_string_buffer(message_size)
    if lib.forcepw_decode_reply(wire, len(wire), verdict, verdict_size, message, message_size):
        assert verdict.value == b"" and message.value == b"", "failure leaves no partial verdict"
        return None, None
    return verdict.value.decode("utf-8"), message.value.decode("utf-8")


@pytest.mark.parametrize("vector", VECTORS["requests"], ids=lambda v: v["name"])
def test_request_encodes_to_the_exact_wire_bytes(protocol, vector):
    wire = vector["wire"].encode("utf-8")
    assert encode(protocol, vector["op"], vector["items"], vector["caller_uid"]) == wire


@pytest.mark.parametrize("vector", VECTORS["replies"], ids=lambda v: v["name"])
def test_reply_decodes_to_the_vector_verdict_and_message(protocol, vector):
    got = decode(protocol, vector["wire"].encode("utf-8"))
    assert got == (vector["verdict"], vector["message"])


def test_null_items_are_sent_as_empty_strings(protocol):
    assert encode(protocol, "check_login", {"user": "bob"}, 1000) == (
        b'{"op":"check_login","user":"bob","service":"","rhost":"","tty":"","ruser":"",'
        b'"caller_uid":1000}\n')


def test_encoding_matches_python_for_every_byte_value(protocol):
    text = "".join(chr(c) for c in range(1, 128)) + "é€😀"
    expected = (json.dumps({"op": "password_changed", "user": text, "service": "s", "rhost": "",
                            "tty": "", "ruser": "", "caller_uid": -1},
                           ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    assert encode(protocol, "password_changed", {"user": text, "service": "s"}, -1) == expected


def test_too_small_buffer_fails_cleanly_and_one_byte_more_for_nul_suffices(protocol):
    vector = VECTORS["requests"][0]
    wire = vector["wire"].encode("utf-8")
    for size in (0, 1, 10, len(wire)):
        assert encode(protocol, vector["op"], vector["items"], 0, size=size) is None
    assert encode(protocol, vector["op"], vector["items"], 0, size=len(wire) + 1) == wire


def test_user_or_service_longer_than_1024_bytes_and_unknown_op_are_refused(protocol):
    assert encode(protocol, "check_login", {"user": "u" * 1024}, 0) is not None
    assert encode(protocol, "check_login", {"user": "u" * 1025}, 0) is None
    assert encode(protocol, "check_login", {"user": "u", "service": "s" * 1025}, 0) is None
    assert encode(protocol, "call", {"user": "u"}, 0) is None


@pytest.mark.parametrize("field", ["rhost", "tty", "ruser"])
def test_a_long_reported_item_is_cut_to_1024_bytes_so_it_cannot_skip_the_check(protocol, field):
    wire = encode(protocol, "check_login", {"user": "u", field: "é" * 600}, 0)
    assert wire is not None
    value = json.loads(wire.decode("utf-8", "replace"))[field]
    assert len(value.encode("utf-8")) <= 1024 + 2 and value.startswith("é" * 511)


def test_worst_case_request_fits_the_module_buffer(protocol):
    worst = {k: "\x01" * 1024 for k in ("user", "service", "rhost", "tty", "ruser")}
    wire = encode(protocol, "password_changed", worst, -2147483648, size=5 * 6 * 1024 + 256)
    assert wire is not None and json.loads(wire)["user"] == "\x01" * 1024


@pytest.mark.parametrize("wire", [
    b"", b"\n", b"[]", b'"allow"', b"{}", b'{"ok":true}',
    b'{"ok":true,"verdict":1,"message":""}',
    b'{"ok":true,"verdict":"allow","message":null}',
    b'{"verdict":"allow"} {"verdict":"allow"}',
    b'{"verdict":"allow",}', b'{"verdict":"allow" "message":""}', b'{"verdict":"allow"',
    b'{"verdict":"al\nlow"}', b'{"verdict":"\\x41"}', b'{"verdict":"\\u00"}',
    b'{"verdict":"\\ud83d"}', b'{"verdict":"\\udd11"}', b'{"verdict":"\\ud83dx\\udd11"}',
    b'{"verdict":"a\\u0000b"}',
    b'{"x":01,"verdict":"allow"}', b'{"x":1.,"verdict":"allow"}', b'{"x":-,"verdict":"allow"}',
    b'{"x":tru,"verdict":"allow"}', b'{"x":[1,],"verdict":"allow"}', b'{"x":{1:2},"verdict":"a"}',
    b'{"x":"\\u0000","verdict":"allow"',
], ids=repr)
def test_anything_but_an_object_with_a_string_verdict_is_refused(protocol, wire):
    assert decode(protocol, wire) == (None, None)


def test_nested_values_are_skipped_and_only_top_level_members_count(protocol):
    wire = (b' {"a":[1,-2.5e+3,0,true,false,null,{"verdict":"change_required"},[[]],{}],'
            b'"b":"\\"verdict\\":\\"x\\"","c":-0.0E-1,"verdict":"allow","\\u006dessage":"k",'
            b'"d":"\\u0000"}\r\n ')
    assert decode(protocol, wire) == ("allow", "k")


def test_missing_message_is_empty_and_last_duplicate_wins_like_python(protocol):
    assert decode(protocol, b'{"verdict":"allow"}') == ("allow", "")
    assert decode(protocol, b'{"verdict":"allow","verdict":"cleared"}') == ("cleared", "")


def test_deep_nesting_fails_without_crashing(protocol):
    for opener in (b"[", b'{"a":'):
        assert decode(protocol, b'{"x":' + opener * 10000) == (None, None)
    assert decode(protocol, b"[" * 4096) == (None, None)
    shallow = b'{"x":' + b"[" * 30 + b"]" * 30 + b',"verdict":"allow"}'
    assert decode(protocol, shallow) == ("allow", "")


def test_reply_longer_than_4096_bytes_or_too_big_for_the_buffers_is_refused(protocol):
    long_message = b'{"verdict":"allow","message":"' + b"m" * 4096 + b'"}'
    assert decode(protocol, long_message) == (None, None)
    assert decode(protocol, b'{"verdict":"change_required"}', verdict_size=15) == (None, None)
    assert decode(protocol, b'{"verdict":"change_required"}', verdict_size=16) == (
        "change_required", "")
    assert decode(protocol, b'{"verdict":"a","message":"abc"}', message_size=3) == (None, None)
