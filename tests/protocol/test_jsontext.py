"""jsontext: Decimal numbers both ways, compact output, and lenient reading."""

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p3log.protocol.jsontext import dumps, json_kind, loads, strip_comments_and_trailing_commas

# Decoded JSON as `loads` returns it: non-integer numbers are Decimal.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def test_non_integer_numbers_load_as_decimal_with_their_digits():
    value, lenient = loads('{"amount": 10.50, "count": 3, "big": 1e400}')
    assert value == {"amount": Decimal("10.50"), "count": 3, "big": Decimal("1E+400")}
    assert str(value["amount"]) == "10.50"
    assert type(value["count"]) is int
    assert lenient is False


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    with pytest.raises(ValueError, match="is not a JSON number"):
        loads(f'{{"amount": {constant}}}')


def test_dumps_is_compact_keeps_key_order_and_writes_decimals_verbatim():
    value = {"b": [1, Decimal("10.50"), True, None], "a": "é", "c": (Decimal("1E+2"),)}
    assert dumps(value) == '{"b":[1,10.50,true,null],"a":"é","c":[1E+2]}'


def test_dumps_escapes_lone_surrogates_so_the_text_is_valid_utf8():
    value, _ = loads('["\\ud800", "\\u00e9"]')
    text = dumps(value)
    assert text == '["\\ud800","é"]'
    assert json.loads(text.encode("utf-8")) == value


@pytest.mark.parametrize(
    "value",
    [1.5, Decimal("NaN"), Decimal("Infinity"), {1: "x"}, {"x"}, b"x"],
    ids=["float", "nan", "infinity", "int-key", "set", "bytes"],
)
def test_dumps_rejects_what_json_cannot_hold(value):
    with pytest.raises(TypeError):
        dumps(value)


@given(json_values)
def test_loads_reads_back_what_dumps_wrote(value):
    assert loads(dumps(value)) == (value, False)


@given(json_values.filter(lambda v: "Decimal" not in repr(v)))
def test_dumps_matches_the_standard_library_on_plain_data(value):
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


DOC_STYLE = """{
  // the request type
  "type": "X", /* inline */ "tag": "a",
  "list": [1, 2,],
}"""


def test_strict_mode_rejects_comments_and_trailing_commas():
    with pytest.raises(json.JSONDecodeError):
        loads(DOC_STYLE)


def test_lenient_mode_accepts_comments_and_trailing_commas_and_says_so():
    assert loads(DOC_STYLE, lenient=True) == ({"type": "X", "tag": "a", "list": [1, 2]}, True)


def test_lenient_mode_reports_no_leniency_for_strict_json():
    assert loads('{"type": "X"}', lenient=True) == ({"type": "X"}, False)


def test_lenient_scanner_leaves_string_contents_alone():
    text = '{"url": "http://x/*y*/", "odd": ",}", "quote": "a\\"//b", "tail": ",]",}'
    value, lenient = loads(text, lenient=True)
    assert value == {"url": "http://x/*y*/", "odd": ",}", "quote": 'a"//b', "tail": ",]"}
    assert lenient is True


def test_lenient_errors_point_into_the_original_text():
    text = '{\n  // comment\n  "a": 1 "b": 2\n}'
    with pytest.raises(json.JSONDecodeError) as caught:
        loads(text, lenient=True)
    assert (caught.value.lineno, caught.value.colno) == (3, 10)


def test_an_unterminated_comment_is_still_an_error():
    with pytest.raises(json.JSONDecodeError):
        loads('{"a": 1 /* never closed }', lenient=True)


@given(st.text(alphabet='{}[],:"\\/*\n ab1'))
def test_stripping_keeps_length_and_line_breaks(text):
    stripped = strip_comments_and_trailing_commas(text)
    assert len(stripped) == len(text)
    assert [i for i, c in enumerate(stripped) if c == "\n"] == [
        i for i, c in enumerate(text) if c == "\n"
    ]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("x", "string"),
        (None, "null"),
        (True, "boolean"),
        (3, "number"),
        (Decimal("1.5"), "number"),
        ({}, "object"),
        ([], "array"),
    ],
)
def test_json_kind_names_json_types(value, kind):
    assert json_kind(value) == kind
