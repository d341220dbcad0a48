"""A WHM API 1 envelope as text, in the formats of `whmapi1 --output=`.

`render(envelope, fmt)` takes the envelope dict ({"data": ..., "metadata": ...}) as the operations
built it and returns the whole output, ending in a newline. Every format reads back to the same data
(YAML and JSON exactly; XML to the WHM tree described below). Choices per format:

- yaml (whmapi1's default): a document starting with "---", block style, keys sorted and list items
  indented under their key like cPanel's YAML::Syck prints them; None is "~". Unlike Syck we write
  no trailing space after "key:". A string is left plain only when it starts with a letter or "_"
  and holds no YAML-significant character, and PyYAML agrees it reads back as a string (so "yes",
  "null", "1", "0o17", "a:b", "#x" are quoted, and so, to be safe, is any non-ASCII text);
  newlines and control characters come out double-quoted with escapes. Long values are not folded.
- json: one line, no spaces, key order as given, UTF-8 text rather than \\u escapes.
- jsonpretty: what Perl's JSON::XS->pretty prints, which cPanel uses: indent 3, "key" : value.
- xml: an XML declaration line, then the tree on one line under <result>. A dict key becomes an
  element; a list becomes one element per item, each named by the list's key
  (<updated>a</updated><updated>b</updated>), so an empty list leaves no element (and a list in a
  list is flattened); None is an empty element; True/False are 1/0. A key that is not a plain XML
  name ([A-Za-z_][A-Za-z0-9_.-]*, not starting with "xml"), such as a username "1abc" or "a b" as a
  key of data.failed, becomes <key name="1abc">...</key>: an element with a name attribute always
  stands for the key in that attribute, a plain element never has attributes.
  Characters XML 1.0 cannot carry at all (most C0 controls, U+FFFE/U+FFFF, lone surrogates) are
  replaced by U+FFFD; a carriage return is written as &#13; so parsers do not turn it into "\\n".
"""

import json
import re

import yaml

FORMATS = ("yaml", "json", "jsonpretty", "xml")


def render(envelope, fmt):
    """Return the envelope as text in fmt (one of FORMATS), ending in a newline."""
    if fmt == "yaml":
        return _render_yaml(envelope)
    if fmt == "json":
        return _escape_surrogates(json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)) + "\n"
    if fmt == "jsonpretty":
        text = json.dumps(envelope, indent=3, separators=(",", " : "), ensure_ascii=False)
        return _escape_surrogates(text) + "\n"
    if fmt == "xml":
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + _xml_element("result", envelope) + "\n"
    raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _escape_surrogates(text):
    # A lone surrogate (an undecodable byte kept by surrogateescape) cannot be written as UTF-8;
    # inside a JSON string its \u escape is the same value, so json.loads gives it back unchanged.
    return re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


# ---- YAML ----

# Strings of this shape may stay plain: no YAML indicator can start them and none inside matters.
# PyYAML still quotes those its resolver would read as something else ("yes", "null", "True").
_YAML_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.,@/'\"()!?+=%-]*(?: [A-Za-z0-9_.,@/'\"()!?+=%-]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _WhmYamlDumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        # Indent "- item" under its key, as YAML::Syck (whmapi1) does; PyYAML would not.
        return super().increase_indent(flow, False)


def _represent_str(dumper, value):
    if _YAML_PLAIN.fullmatch(value):
        style = None  # plain unless PyYAML sees a reason to quote
    elif _CONTROL.search(value) or "\n" in value:
        style = '"'  # escapes keep newlines and control characters visible and exact
    else:
        style = "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_none(dumper, _value):
    return dumper.represent_scalar("tag:yaml.org,2002:null", "~")


_WhmYamlDumper.add_representer(str, _represent_str)
_WhmYamlDumper.add_representer(type(None), _represent_none)


def _render_yaml(envelope):
    return yaml.dump(
        envelope,
        Dumper=_WhmYamlDumper,
        explicit_start=True,
        default_flow_style=False,
        sort_keys=True,
        allow_unicode=True,
        width=2**31 - 1,  # never fold a long message over lines
    )


# ---- XML ----

_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Not in XML 1.0's Char production, so not even a character reference may carry them.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_XML_ATTR_ESCAPES = {**_XML_TEXT_ESCAPES, '"': "&quot;", "\t": "&#9;", "\n": "&#10;"}


def _xml_escape(text, escapes):
    text = _XML_FORBIDDEN.sub("\ufffd", text)
    return "".join(escapes.get(ch, ch) for ch in text)


def _xml_tags(key):
    """Open and close tags for a dict key: the key itself when it is a plain XML name."""
    key = str(key)
    if _XML_NAME.fullmatch(key) and not key.lower().startswith("xml"):
        return f"<{key}>", f"</{key}>"
    return f'<key name="{_xml_escape(key, _XML_ATTR_ESCAPES)}">', "</key>"


def _xml_element(key, value):
    if isinstance(value, list):
        # Repeated elements named after the list; an empty list therefore writes nothing.
        return "".join(_xml_element(key, item) for item in value)
    open_tag, close_tag = _xml_tags(key)
    if isinstance(value, dict):
        inner = "".join(_xml_element(k, v) for k, v in value.items())
    elif value is None:
        inner = ""
    elif isinstance(value, bool):
        inner = "1" if value else "0"  # WHM (Perl) has no booleans: flags are 1 and 0
    else:
        inner = _xml_escape(str(value), _XML_TEXT_ESCAPES)
    return open_tag + inner + close_tag
