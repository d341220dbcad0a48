"""The WHM envelope in every whmapi1 output format: golden files, and each format reads back.

Golden files live in tests/golden/<case>.<format>; regenerate them with
UPDATE_GOLDEN=1 PYTHONPATH=daemon python3 -m pytest tests/test_render.py
and review the diff before committing.
"""

import json
import os
import pathlib
import xml.etree.ElementTree as ET

import pytest
import yaml

from forcepw.render import FORMATS, render

GOLDEN = pathlib.Path(__file__).parent / "golden"


def metadata(result, reason, **extra):
    return {"version": 1, "reason": reason, "result": result, "command": "forcepasswordchange", **extra}


ENVELOPES = {
    "success": {
        "data": {"updated": ["fpwtalice", "fpwtbob"]},
        "metadata": metadata(1, "OK"),
    },
    "nothing_to_do": {
        "data": {"updated": []},
        "metadata": metadata(1, "Nothing to do."),
    },
    "partial_failure": {
        "data": {"updated": ["fpwtalice"], "failed": {"fpwtbob": "User 'fpwtbob' does not exist."}},
        "metadata": metadata(
            0,
            "User 'fpwtbob' does not exist.",
            output={"warnings": ["The users in \"updated\" keep their new state: nothing was rolled back."]},
        ),
    },
    "api_failure": {
        "metadata": metadata(0, 'API failure: The parameter "users_json" is required.'),
    },
    # Names a parser could mistake for something else, and keys that are not XML names.
    "awkward_names": {
        "data": {
            "updated": ["1", "yes", "null", "~", "0o17", "1e3", "a:b", "#c", "-d", "é"],
            "failed": {
                "1abc": "User '1abc' <is> & \"odd\".",
                "a b": "tab\there, cr\rthere, bell\x07, newline\nhere",
                "xmlish": None,
                "key": "a real key named key",
            },
        },
        "metadata": metadata(0, "Failed: 1abc: x; #c"),
    },
}

CASES = [(name, fmt) for name in ENVELOPES for fmt in FORMATS]


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_output_matches_golden_file_byte_for_byte(name, fmt):
    path = GOLDEN / f"{name}.{fmt}"
    text = render(ENVELOPES[name], fmt)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_bytes(text.encode("utf-8"))
    assert text.encode("utf-8") == path.read_bytes()


@pytest.mark.parametrize("name", ENVELOPES)
def test_yaml_reads_back_to_the_envelope(name):
    text = render(ENVELOPES[name], "yaml")
    assert text.startswith("---\n")
    assert yaml.safe_load(text) == ENVELOPES[name]


@pytest.mark.parametrize("fmt", ["json", "jsonpretty"])
@pytest.mark.parametrize("name", ENVELOPES)
def test_json_reads_back_to_the_envelope(name, fmt):
    assert json.loads(render(ENVELOPES[name], fmt)) == ENVELOPES[name]


def test_json_is_one_line_and_keeps_key_order():
    text = render(ENVELOPES["success"], "json")
    assert text == (
        '{"data":{"updated":["fpwtalice","fpwtbob"]},'
        '"metadata":{"version":1,"reason":"OK","result":1,"command":"forcepasswordchange"}}\n'
    )


def test_jsonpretty_is_indented_like_json_xs_pretty():
    assert render(ENVELOPES["success"], "jsonpretty").startswith('{\n   "data" : {\n      "updated" : [\n')


def test_yaml_looks_like_whmapi1():
    assert render(ENVELOPES["success"], "yaml") == (
        "---\ndata:\n  updated:\n    - fpwtalice\n    - fpwtbob\n"
        "metadata:\n  command: forcepasswordchange\n  reason: OK\n  result: 1\n  version: 1\n"
    )


def test_yaml_quotes_usernames_that_look_like_other_types_or_hold_indicators():
    text = render(ENVELOPES["awkward_names"], "yaml")
    for quoted in ("'1'", "'yes'", "'null'", "'~'", "'0o17'", "'1e3'", "'a:b'", "'#c'", "'-d'", "'1abc':"):
        assert quoted in text


def xml_value(element):
    """An element back as the WHM data it stands for (lists become repeated keys: see below)."""
    if len(element) == 0:
        return element.text or ""
    result = {}
    for child in element:
        key = child.get("name", child.tag) if child.attrib else child.tag
        result.setdefault(key, []).append(xml_value(child))
    return result


def whm_tree(value):
    """The envelope as its XML reads back: every value a list of its repeated elements, as text."""
    if isinstance(value, dict):
        tree = {}
        for key, item in value.items():
            items = item if isinstance(item, list) else [item]
            if items:
                tree[key] = [whm_tree(i) for i in items]
        return tree or ""  # XML cannot tell an empty element from an empty dict
    if value is None:
        return ""
    return str(value)


@pytest.mark.parametrize("name", ENVELOPES)
def test_xml_parses_and_holds_the_same_tree(name):
    text = render(ENVELOPES[name], "xml")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "result"
    expected = whm_tree(ENVELOPES[name])
    # The one character XML cannot carry comes back as U+FFFD.
    if name == "awkward_names":
        expected["data"][0]["failed"][0]["a b"] = ["tab\there, cr\rthere, bell\ufffd, newline\nhere"]
    assert xml_value(root) == expected


def test_xml_writes_lists_as_repeated_elements_and_empty_lists_as_nothing():
    assert "<updated>fpwtalice</updated><updated>fpwtbob</updated>" in render(ENVELOPES["success"], "xml")
    assert "<data></data>" in render(ENVELOPES["nothing_to_do"], "xml")


def test_xml_keys_that_are_not_xml_names_go_in_a_name_attribute():
    text = render(ENVELOPES["awkward_names"], "xml")
    assert '<key name="1abc">User \'1abc\' &lt;is&gt; &amp; "odd".</key>' in text
    assert '<key name="a b">' in text
    assert '<key name="xmlish"></key>' in text
    assert "<key>a real key named key</key>" in text


HOSTILE_STRINGS = [
    "", " ", "1", "-1", "0x1F", ".inf", "yes", "No", "ON", "null", "~", "=", "<<", "a: b", "a #b",
    "[x]", "{x}", "*x", "&x", "!x", "%x", "@x", "`x", "'x'", '"x"', "x\n", "\ty", "\x00\x1b\x7f",
    "\u2028", "\ud800", "\ufffe", "]]>", "--", "a" * 300, "é\u00a0ü",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("s", HOSTILE_STRINGS)
def test_any_string_as_key_and_value_reads_back(fmt, s):
    envelope = {"data": {"updated": [s], "failed": {s: s}}, "metadata": metadata(0, s)}
    text = render(envelope, fmt)
    if fmt == "yaml":
        assert yaml.safe_load(text) == envelope
    elif fmt == "xml":
        root = ET.fromstring(text.encode("utf-8", "strict"))
        assert root.find("metadata/reason") is not None
    else:
        assert json.loads(text) == envelope
    text.encode("utf-8", "strict")  # every output can be written out as UTF-8


def test_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match="unknown output format"):
        render(ENVELOPES["success"], "html")
