"""JSON text for P3: numbers as `Decimal`, and the documentation's non-strict JSON.

Amounts must never pass through a float, so `loads` reads every non-integer number
as a `Decimal` and `dumps` writes a `Decimal` back exactly as `str(decimal)`:
`10.50` stays `10.50`. NaN and Infinity are rejected both ways; JSON has neither.

The P3 documentation's examples carry comments and trailing commas. `loads(...,
lenient=True)` accepts them, but only after strict parsing failed, and says so,
so a recorder can tell strict peers from sloppy ones.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

__all__ = ["dumps", "json_kind", "loads"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def loads(text: str, *, lenient: bool = False) -> tuple[Any, bool]:
    """Decode one JSON document; return it and whether leniency was needed.

    Raises `json.JSONDecodeError` (or `ValueError` for NaN, Infinity and integers
    too long to convert, `RecursionError` for absurd nesting) when the text is not
    JSON. In lenient mode the positions in the error still refer to `text`,
    because comments and trailing commas are blanked out, not removed.
    """
    try:
        return _DECODER.decode(text), False
    except json.JSONDecodeError:
        if not lenient:
            raise
        relaxed = strip_comments_and_trailing_commas(text)
        if relaxed == text:
            raise
    return _DECODER.decode(relaxed), True


# A JSON string literal, written so that it cannot backtrack catastrophically on an
# unterminated string. Every pattern below matches it first, so `//`, `/*` and `,}`
# inside strings are skipped over, never mistaken for syntax.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_COMMENT = re.compile(rf"{_STRING}|//[^\n]*|/\*.*?\*/", re.DOTALL)
_TRAILING_COMMA = re.compile(rf"{_STRING}|,(?=[ \t\r\n]*[}}\]])", re.DOTALL)


def strip_comments_and_trailing_commas(text: str) -> str:
    """Blank out `//` and `/* */` comments and trailing commas outside strings.

    Blanked characters become spaces (newlines stay), so the result has the same
    length and line structure as `text` and error positions still point into it.
    """
    without_comments = _COMMENT.sub(_blank_unless_string, text)
    return _TRAILING_COMMA.sub(_blank_unless_string, without_comments)


def _blank_unless_string(match: re.Match[str]) -> str:
    found = match.group()
    if found.startswith('"'):
        return found
    return "".join(char if char == "\n" else " " for char in found)


def dumps(value: Any) -> str:
    """Compact JSON for decoded P3 data, writing each `Decimal` as `str(decimal)`.

    Accepts dict (string keys), list, tuple, str, int, bool, None and finite
    `Decimal`; anything else, floats included, is a `TypeError`: amounts must be
    `Decimal`. Non-ASCII text is written as is, except lone surrogates (which JSON
    input may carry as escapes), which are escaped so the text is valid UTF-8.
    """
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _encode_string(text: str) -> str:
    encoded: str = encode_basestring(text)
    if not encoded.isascii():
        encoded = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)
    return encoded


def _encode(value: Any, parts: list[str]) -> None:
    # bool before int: bool is a subclass of int.
    if isinstance(value, str):
        parts.append(_encode_string(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} cannot be written as a JSON number")
        parts.append(str(value))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            if index:
                parts.append(",")
            parts.append(_encode_string(key))
            parts.append(":")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    else:
        hint = "; amounts must be Decimal" if isinstance(value, float) else ""
        raise TypeError(f"{type(value).__name__} {value!r} is not JSON data{hint}")


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages: "string", "array"..."""
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__
