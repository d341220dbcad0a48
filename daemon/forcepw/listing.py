"""WHM API 1 output post-processing for list-type calls: filter, sort, chunk (paginate), columns.

`apply_list_args(records, args, fields=None)` applies, in this order, the filters, the sort keys,
the chunk and the column selection that the call's string arguments ask for, and returns
(records, extra_metadata). `is_listing_arg(name)` and `list_arg_names(args)` name the arguments
this module consumes, so the caller can reject any other unknown parameter. A bad argument raises
ListingError; the caller turns it into result 0, reason "API failure: <message>".

Grammar (L is a label: "a", "b", ... "z", "aa", ...; labels apply in that order. For sort, the
letterless form "api.sort.field=owner" that cPanel's documentation also shows is the first key):
- api.filter.enable, api.filter.L.field, api.filter.L.arg0, api.filter.L.type (default contains)
- api.sort.enable, api.sort.L.field, api.sort.L.method (default lexicographic), api.sort.L.reverse
- api.chunk.enable, api.chunk.size, api.chunk.start (default 1)
- api.columns.enable, api.columns.L
A group applies only with its enable=1 (enable=0 or no enable: its other arguments are checked for
spelling and otherwise ignored, as WHM ignores them). Booleans are 1 or 0, nothing else.

Filters (all must match: AND):
- contains, begins: case-insensitive substring / prefix of the value as text (as cPanel's docs say).
- eq: exact, case-sensitive string equality (Perl `eq`).
- ==, lt, lt_equal, gt, gt_equal: numeric; arg0 must be a number; a record whose value is not a
  number never matches (cPanel's Perl would read it as 0 with a warning; we refuse to guess).
- field "*" matches when any field of the record matches (cPanel's docs allow it).
Values are compared as text this way: None is "", True/False are "1"/"0", others str().
metadata.filter echoes the applied filters: {"a": {"field", "arg0", "type"}, ...}.

Sort: lexicographic compares the text case-sensitively by code point (Perl `cmp`); numeric puts the
values that are not numbers after all numbers (before them when reversed). Several keys: the first
label decides, the next breaks ties; the sort is stable, so full ties keep their input order.

Chunk: api.chunk.start is the 1-based index of the first record shown, size the number shown.
metadata.chunk = {start, size, records (after filtering), current (1-based chunk holding start),
chunks (ceil(records / size))}. A start past the end gives no records and current > chunks.

Columns: each record keeps only the named fields, in label order; fields a record lacks stay absent.

Unknown fields are errors when the set of fields is known: pass fields=, or it is the union of the
records' keys (with no records and no fields=, any field name is accepted).
"""

import math
import re


MAX_LABELS = 26  # filters, sort keys or columns in one request (a..z)


class ListingError(Exception):
    """A list argument that cannot be applied; the message is for the API caller."""


FILTER_TYPES = ("contains", "begins", "eq", "==", "lt", "lt_equal", "gt", "gt_equal")
SORT_METHODS = ("lexicographic", "numeric")

_GROUPS = ("filter", "sort", "chunk", "columns")
_LABEL = r"(?:(?P<label>[a-z]+)\.)?"
_ARG_GRAMMAR = {
    "filter": re.compile(r"(?P<label>[a-z]+)\.(?P<part>field|arg0|type)"),
    "sort": re.compile(_LABEL + r"(?P<part>field|method|reverse)"),
    "chunk": re.compile(r"(?P<part>size|start)"),
    "columns": re.compile(r"(?P<label>[a-z]+)"),
}

_NUMERIC_TESTS = {
    "==": lambda value, arg: value == arg,
    "lt": lambda value, arg: value < arg,
    "lt_equal": lambda value, arg: value <= arg,
    "gt": lambda value, arg: value > arg,
    "gt_equal": lambda value, arg: value >= arg,
}


def is_listing_arg(name):
    """Whether an argument name belongs to list post-processing (api.filter/sort/chunk/columns.*)."""
    return any(name.startswith(f"api.{group}.") for group in _GROUPS)


def list_arg_names(args):
    """The names in args that belong to list post-processing."""
    return {name for name in args if is_listing_arg(name)}


def apply_list_args(records, args, fields=None):
    """Filter, sort, chunk and select columns of records as args ask; return (records, metadata).

    records: list of dicts (not modified). args: the call's arguments, str -> str; arguments not
    named by list_arg_names are ignored. fields: the field names a record may have, if known.
    metadata holds "filter" and/or "chunk" when those groups were applied.
    """
    groups = _parse(args)
    known = set(fields) if fields is not None else {k for r in records for k in r}
    check_field = _field_checker(known, strict=fields is not None or bool(records))
    metadata = {}

    if "filter" in groups:
        tests, metadata["filter"] = _filters(groups["filter"], check_field)
        records = [r for r in records if all(test(r) for test in tests)]
    if "sort" in groups:
        records = _sort(records, groups["sort"], check_field)
    else:
        records = list(records)
    if "chunk" in groups:
        records, metadata["chunk"] = _chunk(records, groups["chunk"])
    if "columns" in groups:
        records = _columns(records, groups["columns"], check_field)
    return records, metadata


# ---- parsing ----


def _parse(args):
    """{group: {label_or_part: ...}} for each enabled group; spelling errors raise ListingError."""
    groups = {}
    for group in _GROUPS:
        prefix = f"api.{group}."
        enable = args.get(prefix + "enable")
        if enable not in (None, "0", "1"):
            raise ListingError(f'"{prefix}enable" must be 1 or 0, not "{enable}".')
        parsed = {}
        for name, value in args.items():
            if not name.startswith(prefix) or name == prefix + "enable":
                continue
            match = _ARG_GRAMMAR[group].fullmatch(name[len(prefix):])
            if not match:
                raise ListingError(f'Unknown parameter "{name}".')
            label = match.groupdict().get("label") or ""
            part = match.groupdict().get("part")
            if part is None:  # columns: api.columns.L=FIELD
                parsed[label] = value
            elif group == "chunk":
                parsed[part] = value
            else:
                parsed.setdefault(label, {})[part] = value
        if len(parsed) > MAX_LABELS:
            # Each filter or sort key costs a pass over the records: bounded, so that no caller
            # can make one request take seconds of the daemon's time.
            raise ListingError(f'At most {MAX_LABELS} "api.{group}" entries are allowed.')
        if enable == "1":
            groups[group] = parsed
    return groups


def _labelled(by_label):
    # "" (letterless sort key) first, then a..z, then aa, ab, ...
    return sorted(by_label.items(), key=lambda item: (len(item[0]), item[0]))


def _field_checker(known, strict):
    def check(field, arg_name, allow_star=False):
        if field is None or field == "":
            raise ListingError(f'"{arg_name}" is required.')
        if allow_star and field == "*":
            return
        if strict and field not in known:
            raise ListingError(f'"{arg_name}" names an unknown field "{field}".')

    return check


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _number(value):
    """The value as a float, or None when it is not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _sort_arg(label, part):
    return f"api.sort.{label + '.' if label else ''}{part}"


# ---- filter ----


def _filters(by_label, check_field):
    """(record tests, metadata.filter) for the filters labelled a, b, ..."""
    tests, specs = [], {}
    for label, parts in _labelled(by_label):
        field, arg0, ftype = parts.get("field"), parts.get("arg0"), parts.get("type", "contains")
        check_field(field, f"api.filter.{label}.field", allow_star=True)
        if arg0 is None:
            raise ListingError(f'"api.filter.{label}.arg0" is required.')
        if ftype not in FILTER_TYPES:
            raise ListingError(
                f'"api.filter.{label}.type" must be one of {", ".join(FILTER_TYPES)}, not "{ftype}".'
            )
        if ftype in _NUMERIC_TESTS and _number(arg0) is None:
            raise ListingError(
                f'"api.filter.{label}.arg0" must be a number for type "{ftype}", not "{arg0}".'
            )
        tests.append(_record_test(field, _value_test(ftype, arg0)))
        specs[label] = {"field": field, "arg0": arg0, "type": ftype}
    return tests, specs


def _value_test(ftype, arg0):
    if ftype == "contains":
        needle = arg0.casefold()
        return lambda value: needle in _text(value).casefold()
    if ftype == "begins":
        needle = arg0.casefold()
        return lambda value: _text(value).casefold().startswith(needle)
    if ftype == "eq":
        return lambda value: _text(value) == arg0
    compare, arg = _NUMERIC_TESTS[ftype], _number(arg0)

    def numeric(value):
        number = _number(value)
        return number is not None and compare(number, arg)

    return numeric


def _record_test(field, value_test):
    if field == "*":
        return lambda record: any(value_test(v) for v in record.values())
    return lambda record: value_test(record.get(field))


# ---- sort ----


def _sort(records, by_label, check_field):
    keys = []
    for label, parts in _labelled(by_label):
        check_field(parts.get("field"), _sort_arg(label, "field"))
        method = parts.get("method", "lexicographic")
        if method not in SORT_METHODS:
            raise ListingError(
                f'"{_sort_arg(label, "method")}" must be one of {", ".join(SORT_METHODS)}, not "{method}".'
            )
        reverse = parts.get("reverse", "0")
        if reverse not in ("0", "1"):
            raise ListingError(f'"{_sort_arg(label, "reverse")}" must be 1 or 0, not "{reverse}".')
        keys.append((parts["field"], method, reverse == "1"))

    records = list(records)
    # Stable sorts from the last key to the first give the multi-key order.
    for field, method, reverse in reversed(keys):
        if method == "numeric":

            def key(record, field=field):
                number = _number(record.get(field))
                return (1, 0.0) if number is None else (0, number)

        else:

            def key(record, field=field):
                return _text(record.get(field))

        records.sort(key=key, reverse=reverse)
    return records


# ---- chunk ----


def _positive_int(by_part, part, default=None):
    raw = by_part.get(part, default)
    name = f"api.chunk.{part}"
    if raw is None:
        raise ListingError(f'"{name}" is required.')
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < 1:
        raise ListingError(f'"{name}" must be a whole number of at least 1, not "{raw}".')
    return int(raw)


def _chunk(records, by_part):
    size = _positive_int(by_part, "size")
    start = _positive_int(by_part, "start", default="1")
    total = len(records)
    meta = {
        "start": start,
        "size": size,
        "records": total,
        "current": (start - 1) // size + 1,
        "chunks": math.ceil(total / size),
    }
    return records[start - 1 : start - 1 + size], meta


# ---- columns ----


def _columns(records, by_label, check_field):
    if not by_label:
        raise ListingError('"api.columns.enable=1" needs at least one column ("api.columns.a").')
    columns = []
    for label, field in _labelled(by_label):
        check_field(field, f"api.columns.{label}")
        columns.append(field)
    return [{f: r[f] for f in columns if f in r} for r in records]
