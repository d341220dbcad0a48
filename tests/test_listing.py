"""WHM API 1 list post-processing: filter, sort, chunk, columns, and their argument errors."""

import pytest

from forcepw.listing import ListingError, apply_list_args, is_listing_arg, list_arg_names

RECORDS = [
    {"user": "alice", "set_by": "root", "age": 30, "reason": "Leaked"},
    {"user": "Bob", "set_by": "admin1", "age": "7", "reason": None},
    {"user": "carol", "set_by": "root", "age": 120, "reason": "audit"},
    {"user": "dave", "set_by": "admin2", "age": "unknown", "reason": "leak found"},
    {"user": "erin", "set_by": "root", "age": 7, "reason": ""},
]


def users(records):
    return [r["user"] for r in records]


def filtered(field, arg0, ftype=None, records=RECORDS):
    args = {"api.filter.enable": "1", "api.filter.a.field": field, "api.filter.a.arg0": arg0}
    if ftype is not None:
        args["api.filter.a.type"] = ftype
    return users(apply_list_args(records, args)[0])


# ---- filter ----


def test_contains_is_the_default_type_and_ignores_case():
    assert filtered("reason", "LEAK") == ["alice", "dave"]


def test_begins_matches_a_case_insensitive_prefix():
    assert filtered("user", "b", "begins") == ["Bob"]
    assert filtered("reason", "found", "begins") == []


def test_eq_is_exact_and_case_sensitive():
    assert filtered("user", "bob", "eq") == []
    assert filtered("user", "Bob", "eq") == ["Bob"]


def test_eq_against_none_matches_the_empty_string():
    assert filtered("reason", "", "eq") == ["Bob", "erin"]


@pytest.mark.parametrize(
    ("ftype", "arg0", "expected"),
    [
        ("==", "7", ["Bob", "erin"]),
        ("==", "7.0", ["Bob", "erin"]),
        ("lt", "30", ["Bob", "erin"]),
        ("lt_equal", "30", ["alice", "Bob", "erin"]),
        ("gt", "30", ["carol"]),
        ("gt_equal", "30", ["alice", "carol"]),
    ],
)
def test_numeric_types_compare_numbers_and_skip_values_that_are_not(ftype, arg0, expected):
    assert filtered("age", arg0, ftype) == expected


def test_star_field_matches_any_field():
    assert filtered("*", "admin", "begins") == ["Bob", "dave"]


def test_several_filters_must_all_match():
    args = {
        "api.filter.enable": "1",
        "api.filter.a.field": "set_by",
        "api.filter.a.arg0": "root",
        "api.filter.a.type": "eq",
        "api.filter.b.field": "age",
        "api.filter.b.arg0": "10",
        "api.filter.b.type": "lt",
    }
    records, meta = apply_list_args(RECORDS, args)
    assert users(records) == ["erin"]
    assert meta == {
        "filter": {
            "a": {"field": "set_by", "arg0": "root", "type": "eq"},
            "b": {"field": "age", "arg0": "10", "type": "lt"},
        }
    }


def test_metadata_filter_shows_the_default_type():
    args = {"api.filter.enable": "1", "api.filter.a.field": "user", "api.filter.a.arg0": "a"}
    _, meta = apply_list_args(RECORDS, args)
    assert meta == {"filter": {"a": {"field": "user", "arg0": "a", "type": "contains"}}}


def test_filter_arguments_without_enable_are_ignored():
    args = {"api.filter.a.field": "user", "api.filter.a.arg0": "zzz"}
    assert apply_list_args(RECORDS, args) == (RECORDS, {})
    args["api.filter.enable"] = "0"
    assert apply_list_args(RECORDS, args) == (RECORDS, {})


# ---- sort ----


def sorted_users(*keys, records=RECORDS):
    args = {"api.sort.enable": "1"}
    for label, (field, method, reverse) in zip("abc", keys):
        args[f"api.sort.{label}.field"] = field
        if method is not None:
            args[f"api.sort.{label}.method"] = method
        if reverse is not None:
            args[f"api.sort.{label}.reverse"] = reverse
    return users(apply_list_args(records, args)[0])


def test_lexicographic_is_the_default_and_compares_code_points():
    assert sorted_users(("user", None, None)) == ["Bob", "alice", "carol", "dave", "erin"]


def test_lexicographic_compares_numbers_as_text():
    assert sorted_users(("age", "lexicographic", "0")) == ["carol", "alice", "Bob", "erin", "dave"]


def test_numeric_sorts_by_value_and_puts_non_numbers_last():
    assert sorted_users(("age", "numeric", None)) == ["Bob", "erin", "alice", "carol", "dave"]


def test_reverse_reverses_the_order_but_keeps_ties_in_input_order():
    assert sorted_users(("age", "numeric", "1")) == ["dave", "carol", "alice", "Bob", "erin"]


def test_second_sort_key_breaks_ties_of_the_first():
    by_setter_then_user_reversed = sorted_users(("set_by", None, None), ("user", None, "1"))
    assert by_setter_then_user_reversed == ["Bob", "dave", "erin", "carol", "alice"]


def test_letterless_sort_field_is_accepted_like_cpanel_documents():
    args = {"api.sort.enable": "1", "api.sort.field": "age", "api.sort.method": "numeric"}
    assert users(apply_list_args(RECORDS, args)[0]) == ["Bob", "erin", "alice", "carol", "dave"]


def test_sorting_does_not_modify_the_callers_list():
    before = list(RECORDS)
    sorted_users(("user", None, "1"))
    assert RECORDS == before


# ---- chunk ----


def chunk(size, start=None, records=RECORDS):
    args = {"api.chunk.enable": "1", "api.chunk.size": size}
    if start is not None:
        args["api.chunk.start"] = start
    records, meta = apply_list_args(records, args)
    return users(records), meta["chunk"]


def test_first_chunk_starts_at_record_one_by_default():
    assert chunk("2") == (
        ["alice", "Bob"],
        {"start": 1, "size": 2, "records": 5, "current": 1, "chunks": 3},
    )


def test_middle_chunk():
    assert chunk("2", "3") == (
        ["carol", "dave"],
        {"start": 3, "size": 2, "records": 5, "current": 2, "chunks": 3},
    )


def test_last_chunk_may_be_short():
    assert chunk("2", "5") == (["erin"], {"start": 5, "size": 2, "records": 5, "current": 3, "chunks": 3})


def test_start_past_the_end_gives_no_records():
    assert chunk("2", "9") == ([], {"start": 9, "size": 2, "records": 5, "current": 5, "chunks": 3})


def test_chunk_of_no_records_has_zero_chunks():
    assert chunk("10", records=[]) == (
        [],
        {"start": 1, "size": 10, "records": 0, "current": 1, "chunks": 0},
    )


def test_chunk_counts_records_after_filtering_and_pages_the_sorted_list():
    args = {
        "api.filter.enable": "1",
        "api.filter.a.field": "set_by",
        "api.filter.a.arg0": "root",
        "api.sort.enable": "1",
        "api.sort.a.field": "user",
        "api.sort.a.reverse": "1",
        "api.chunk.enable": "1",
        "api.chunk.size": "2",
    }
    records, meta = apply_list_args(RECORDS, args)
    assert users(records) == ["erin", "carol"]
    assert meta["chunk"] == {"start": 1, "size": 2, "records": 3, "current": 1, "chunks": 2}


# ---- columns ----


def test_columns_keep_only_the_named_fields_in_label_order():
    args = {"api.columns.enable": "1", "api.columns.a": "reason", "api.columns.b": "user"}
    records, meta = apply_list_args(RECORDS[:2], args)
    assert records == [{"reason": "Leaked", "user": "alice"}, {"reason": None, "user": "Bob"}]
    assert [list(r) for r in records] == [["reason", "user"], ["reason", "user"]]
    assert meta == {}


def test_columns_apply_after_sorting_on_a_hidden_field():
    args = {
        "api.sort.enable": "1",
        "api.sort.a.field": "age",
        "api.sort.a.method": "numeric",
        "api.columns.enable": "1",
        "api.columns.a": "user",
    }
    expected = [{"user": u} for u in ["Bob", "erin", "alice", "carol", "dave"]]
    assert apply_list_args(RECORDS, args)[0] == expected


def test_a_field_missing_from_a_record_stays_absent():
    records = [{"user": "a", "reason": "x"}, {"user": "b"}]
    args = {"api.columns.enable": "1", "api.columns.a": "reason"}
    assert apply_list_args(records, args)[0] == [{"reason": "x"}, {}]


# ---- argument names ----


def test_list_arg_names_are_the_api_list_arguments_only():
    args = {
        "users_json": "{}",
        "api.version": "1",
        "api.filter.enable": "1",
        "api.filter.a.field": "user",
        "api.sort.a.field": "user",
        "api.chunk.size": "5",
        "api.columns.a": "user",
        "api.filtered": "x",
    }
    assert list_arg_names(args) == {
        "api.filter.enable",
        "api.filter.a.field",
        "api.sort.a.field",
        "api.chunk.size",
        "api.columns.a",
    }


def test_is_listing_arg_agrees_with_list_arg_names():
    assert is_listing_arg("api.sort.b.reverse")
    assert not is_listing_arg("api.version")
    assert not is_listing_arg("api.sort")


def test_other_arguments_are_ignored():
    assert apply_list_args(RECORDS, {"users_json": "{}", "api.version": "1"}) == (RECORDS, {})


# ---- errors ----

FILTER_A = {"api.filter.enable": "1", "api.filter.a.field": "user", "api.filter.a.arg0": "a"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"api.filter.enable": "yes"}, '"api.filter.enable" must be 1 or 0'),
        ({**FILTER_A, "api.filter.a.type": "ends"}, '"api.filter.a.type" must be one of contains, begins'),
        ({**FILTER_A, "api.filter.a.field": "nosuch"}, '"api.filter.a.field" names an unknown field'),
        ({"api.filter.enable": "1", "api.filter.a.arg0": "a"}, '"api.filter.a.field" is required'),
        ({"api.filter.enable": "1", "api.filter.a.field": "user"}, '"api.filter.a.arg0" is required'),
        ({**FILTER_A, "api.filter.a.type": "lt"}, '"api.filter.a.arg0" must be a number for type "lt"'),
        ({**FILTER_A, "api.filter.a.fields": "user"}, 'Unknown parameter "api.filter.a.fields"'),
        ({"api.filter.field": "user"}, 'Unknown parameter "api.filter.field"'),
        ({"api.sort.enable": "1", "api.sort.a.field": "nosuch"}, '"api.sort.a.field" names an unknown field'),
        ({"api.sort.enable": "1", "api.sort.a.field": "user", "api.sort.a.method": "ipv4"},
         '"api.sort.a.method" must be one of lexicographic, numeric'),
        ({"api.sort.enable": "1", "api.sort.a.field": "user", "api.sort.a.reverse": "true"},
         '"api.sort.a.reverse" must be 1 or 0'),
        ({"api.sort.enable": "1", "api.sort.a.method": "numeric"}, '"api.sort.a.field" is required'),
        ({"api.chunk.enable": "1"}, '"api.chunk.size" is required'),
        ({"api.chunk.enable": "1", "api.chunk.size": "ten"}, '"api.chunk.size" must be a whole number'),
        ({"api.chunk.enable": "1", "api.chunk.size": "0"}, '"api.chunk.size" must be a whole number'),
        ({"api.chunk.enable": "1", "api.chunk.size": "-2"}, '"api.chunk.size" must be a whole number'),
        ({"api.chunk.enable": "1", "api.chunk.size": "2", "api.chunk.start": "0"},
         '"api.chunk.start" must be a whole number of at least 1'),
        ({"api.chunk.enable": "1", "api.chunk.page": "2"}, 'Unknown parameter "api.chunk.page"'),
        ({"api.columns.enable": "1"}, "needs at least one column"),
        ({"api.columns.enable": "1", "api.columns.a": "nosuch"}, '"api.columns.a" names an unknown field'),
        ({"api.columns.enable": "1", "api.columns.A": "user"}, 'Unknown parameter "api.columns.A"'),
    ],
)
def test_bad_arguments_raise_listing_error_with_a_clear_message(args, message):
    with pytest.raises(ListingError) as raised:
        apply_list_args(RECORDS, args)
    assert message in str(raised.value)


def test_known_fields_are_checked_even_with_no_records():
    args = {"api.sort.enable": "1", "api.sort.a.field": "nosuch"}
    with pytest.raises(ListingError, match="unknown field"):
        apply_list_args([], args, fields=("user", "reason"))
    assert apply_list_args([], args) == ([], {})  # nothing to check against


def test_more_than_26_filters_or_a_huge_chunk_size_is_refused():
    from forcepw.listing import MAX_LABELS, ListingError, apply_list_args
    import itertools
    labels = ["".join(p) for p in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=2)]
    args = {"api.filter.enable": "1"}
    for label in labels[:MAX_LABELS + 1]:
        args.update({f"api.filter.{label}.field": "user", f"api.filter.{label}.arg0": "x"})
    with pytest.raises(ListingError):
        apply_list_args([{"user": "x"}], args)
    with pytest.raises(ListingError):
        apply_list_args([{"user": "x"}], {"api.chunk.enable": "1", "api.chunk.size": "9" * 5000})
