"""Redaction: what the store must never hold is removed before anything is written.

PROTOCOL.md: p3log never stores a `merchantSecret` or a full card number (PAN). Rules:

- ``merchant_secret``: the value of every ``merchantSecret`` key becomes the string
  ``[REDACTED merchantSecret hmac-sha256:<32 hex>]``, a fingerprint keyed with the store's
  own key, so an auditor can tell two secrets apart (or see one reused) without seeing either.
- ``pan``: a run of 13-19 digits (single spaces or dashes allowed between digit groups) that
  passes the Luhn check keeps its first 6 and last 4 digits; the other digits become ``*``
  and the separators stay. In a run with separators every span of whole groups is a
  candidate (``"qty 2 4111 1111 1111 1111"``); more than 19 digits with no separator are an
  identifier, not a card. In a JSON object only string contents are masked (a number is an
  amount or a timestamp); bytes that are not a JSON object are masked anywhere.
- ``reserialized``: see step 3.

The bytes are edited where they stand, so everything else stays byte-identical. Steps,
cheapest first; an ordinary message stops after the first:

1. ``in`` checks for ``"merchantSecret"`` and a backslash, and a translate + find for a
   stretch of 13 digits/separators. When nothing turns up, the input is returned as it is
   (the same object) with no rules.
2. Text edits: the value after each ``"merchantSecret":`` and each Luhn-valid run. Only when
   such a run exists is the input parsed, to tell strings from numbers.
3. JSON can spell any character as a ``\\u`` escape (``"merchant\\u0053ecret"``), which text
   matching cannot see. Only when the bytes hold an escape that could hide something
   (`_RISKY_ESCAPE`) is the document parsed and walked; if something is still left to
   redact, the redacted tree is written back compactly (key order, duplicate keys and exact
   numbers kept) and the event says so with the rule ``reserialized``.

Digits are ASCII digits only. Bump `REDACTION_POLICY` whenever what the rules match changes.
"""

from __future__ import annotations

import bisect
import hmac
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

import attrs

REDACTION_POLICY: Final = "p3log-redact/1"

MERCHANT_SECRET_RULE: Final = "merchant_secret"
PAN_RULE: Final = "pan"
RESERIALIZED_RULE: Final = "reserialized"

_SECRET_KEY: Final = "merchantSecret"
_MARKER_PREFIX: Final = "[REDACTED merchantSecret hmac-sha256:"
_MARKER: Final = re.compile(r"\[REDACTED merchantSecret hmac-sha256:[0-9a-f]{32}\]")
_MARKER_LITERAL: Final = re.compile(rb'"\[REDACTED merchantSecret hmac-sha256:[0-9a-f]{32}\]"')

_SECRET_KEY_LITERAL: Final = b'"merchantSecret"'
_SECRET_KEY_COLON: Final = re.compile(rb'"merchantSecret"[ \t\r\n]*:[ \t\r\n]*')
# A string literal; in malformed bytes the closing quote may be missing (then it runs to
# the end of the input).
_STRING_LITERAL: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
# A bare value: a number, true, null, or in malformed bytes anything up to the next
# delimiter (the documentation's placeholders look like `<merchant secret>`).
_BARE_VALUE: Final = re.compile(rb'[^\s,{}\[\]"](?:[^,{}\[\]"\r\n]*[^\s,{}\[\]"])?')
_STRING_OR_BRACKET: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)

# A run: digit groups joined by single spaces or dashes. Possessive, so it never backtracks.
_RUN: Final = re.compile(rb"[0-9]++(?:[ -][0-9]++)*+")
# A run of 13 digits lies in a stretch of 13 or more digits, spaces and dashes. Finding
# those with translate and find runs at C speed; a regex scans ordinary text ten times
# slower, so it only looks inside them.
_RUN_CHARS_AS_ZERO: Final = bytes(0x30 if byte in b"0123456789 -" else 0x78 for byte in range(256))
_STRETCH: Final = b"0" * 13
_DIGIT_GROUP: Final = re.compile(rb"[0-9]+")
_PAN_MIN, _PAN_MAX = 13, 19
_MAX_GROUPS: Final = 64
_KEEP_FIRST, _KEEP_LAST = 6, 4
_DIGIT_VALUE: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_LUHN_DOUBLED: Final = bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]).ljust(256, b"\0")

# The escapes that can hide a key or a card number from text matching: one that spells an
# ASCII character, and one whose hex digits run on into digits ("\\u00e94111..." makes the
# text run start with an extra 9).
_RISKY_ESCAPE: Final = re.compile(rb"\\u(?:00[2-7][0-9A-Fa-f]|[0-9A-Fa-f]{4}[0-9])")

_Edit = tuple[int, int, bytes]


@attrs.frozen
class Redacted:
    """Redacted bytes and the names of the rules that changed them (sorted, unique)."""

    data: bytes
    rules: tuple[str, ...]


class Redactor:
    """Applies the redaction rules with one store's fingerprint key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the redaction key must not be empty")
        self._key = key

    def fingerprint(self, secret: str) -> str:
        """The first 32 hex digits of HMAC-SHA256(key, secret)."""
        message = secret.encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, message, "sha256").hex()[:32]

    def redact(self, raw: bytes) -> Redacted:
        """Redact one message as received; any bytes at all, never raises."""
        fired: set[str] = set()
        edits, secret_spans = self._secret_edits(raw)
        if edits:
            fired.add(MERCHANT_SECRET_RULE)
        card_edits = _card_edits(raw, secret_spans)
        if card_edits:
            fired.add(PAN_RULE)
            edits = sorted(edits + card_edits)
        data = _apply(raw, edits) if edits else raw

        if b"\\" in data and _RISKY_ESCAPE.search(data):
            data = self._redact_tree(data, fired)
        if not fired:
            return Redacted(raw, ())
        return Redacted(data, tuple(sorted(fired)))

    def _marker(self, secret: str) -> str:
        return f"{_MARKER_PREFIX}{self.fingerprint(secret)}]"

    def _secret_edits(self, raw: bytes) -> tuple[list[_Edit], list[tuple[int, int]]]:
        """Edits that replace secret values, and the spans of all secret values."""
        if _SECRET_KEY_LITERAL not in raw:
            return [], []
        edits: list[_Edit] = []
        spans: list[tuple[int, int]] = []
        for key in _SECRET_KEY_COLON.finditer(raw):
            if spans and key.start() < spans[-1][1]:
                continue  # the "key" is text inside the previous secret value
            start = key.end()
            end = _value_end(raw, start)
            if end == start:
                continue  # no value to hide
            spans.append((start, end))
            if not _MARKER_LITERAL.fullmatch(raw, start, end):
                literal = json.dumps(self._marker(_secret_text(raw[start:end])))
                edits.append((start, end, literal.encode()))
        return edits, spans

    def _redact_tree(self, data: bytes, fired: set[str]) -> bytes:
        """Step 3: redact the parsed document; rewrite it only if that changed something."""
        try:
            tree = _loads(data)
            if not isinstance(tree, _Object):
                return data
            found: set[str] = set()
            self._scrub(tree, found)
            if not found:
                return data
            rewritten = _dumps(tree)
        except (ValueError, RecursionError):
            # Not JSON (step 2 already masked it conservatively), or nested deeper than
            # Python's recursion limit, which no P3 message is.
            return data
        fired.update(found, (RESERIALIZED_RULE,))
        return rewritten

    def _scrub(self, node: Any, found: set[str]) -> Any:
        """Apply the rules to a parsed value; containers are edited in place."""
        if isinstance(node, str):
            masked = _mask_cards_in_text(node)
            if masked != node:
                found.add(PAN_RULE)
            return masked
        if isinstance(node, _Object):
            for index, (key, value) in enumerate(node):
                if key != _SECRET_KEY:
                    node[index] = (self._scrub(key, found), self._scrub(value, found))
                elif not (isinstance(value, str) and _MARKER.fullmatch(value)):
                    node[index] = (key, self._marker(_value_text(value)))
                    found.add(MERCHANT_SECRET_RULE)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                node[index] = self._scrub(item, found)
        return node


def _value_end(raw: bytes, start: int) -> int:
    """Where the JSON value starting at `start` ends (== start if there is none)."""
    first = raw[start : start + 1]
    if first == b'"':
        literal = _STRING_LITERAL.match(raw, start)
        assert literal is not None  # the pattern matches any text that opens with a quote
        return literal.end()
    if first in (b"{", b"["):
        depth = 0
        for token in _STRING_OR_BRACKET.finditer(raw, start):
            bracket = token.group()
            if bracket in (b"{", b"["):
                depth += 1
            elif bracket in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return token.end()
        return len(raw)  # unbalanced: hide everything that follows
    bare = _BARE_VALUE.match(raw, start)
    return start if bare is None else bare.end()


def _secret_text(literal: bytes) -> str:
    """The decoded value that a secret's fingerprint covers."""
    try:
        return _value_text(_loads(literal))
    except (ValueError, RecursionError):
        return literal.decode("utf-8", "surrogateescape")


def _value_text(value: Any) -> str:
    """A string as itself; anything else as its compact JSON text."""
    return value if isinstance(value, str) else _dumps(value).decode("utf-8", "surrogateescape")


def _card_edits(raw: bytes, skip: list[tuple[int, int]]) -> list[_Edit]:
    """Edits that mask card numbers, outside the `skip` spans (secret values)."""
    edits = [
        (run.start(), run.end(), masked)
        for run in _digit_runs(raw)
        if not any(start <= run.start() < end for start, end in skip)
        and (masked := _mask_run(run.group())) is not None
    ]
    if edits and _is_json_object(raw):
        # In valid JSON a run never crosses a quote, so its start says where it lies.
        strings = [(m.start(), m.end()) for m in _STRING_LITERAL.finditer(raw)]
        starts = [start for start, _ in strings]
        edits = [
            edit
            for edit in edits
            if (i := bisect.bisect_right(starts, edit[0]) - 1) >= 0 and edit[0] < strings[i][1]
        ]
    return edits


def _digit_runs(data: bytes) -> Iterator[re.Match[bytes]]:
    """The runs of 13 or more digits, without a regex scan of ordinary text."""
    stretches = data.translate(_RUN_CHARS_AS_ZERO)
    start = stretches.find(_STRETCH)
    while start >= 0:
        end = stretches.find(b"x", start)
        end = len(data) if end < 0 else end
        for run in _RUN.finditer(data, start, end):
            text = run.group()
            if len(text) - text.count(b" ") - text.count(b"-") >= _PAN_MIN:
                yield run
        start = stretches.find(_STRETCH, end)


def _mask_cards_in_text(text: str) -> str:
    data = text.encode("utf-8", "surrogatepass")
    edits = [
        (run.start(), run.end(), masked)
        for run in _digit_runs(data)
        if (masked := _mask_run(run.group())) is not None
    ]
    return _apply(data, edits).decode("utf-8", "surrogatepass") if edits else text


def _mask_run(run: bytes) -> bytes | None:
    """The run with every card number in it masked, or None if it holds none."""
    spans = list(_card_spans(run))
    if not spans:
        return None
    masked = bytearray(run)
    for start, end in spans:
        digits = [i for i in range(start, end) if 0x30 <= run[i] <= 0x39]
        for i in digits[_KEEP_FIRST : len(digits) - _KEEP_LAST]:
            masked[i] = 0x2A  # "*"
    return bytes(masked)


def _card_spans(run: bytes) -> Iterator[tuple[int, int]]:
    """The spans of a run (digits and single separators) that are card numbers."""
    if run.isdigit():  # the common case: a timestamp, an identifier, a card number
        if _PAN_MIN <= len(run) <= _PAN_MAX and _luhn_valid(run):
            yield 0, len(run)
        return
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(run)]
    if len(groups) > _MAX_GROUPS:
        # Nobody writes so many digit groups in a row; rather than try up to 7 spans per
        # group (seconds for a 1 MiB frame of "1 1 1 ..."), hide all of it but its ends.
        yield 0, len(run)
        return
    for first, (start, _) in enumerate(groups):
        digits = 0
        for group_start, end in groups[first : first + _PAN_MAX]:
            digits += end - group_start
            if digits > _PAN_MAX:
                break
            if digits >= _PAN_MIN and _luhn_valid(run[start:end].translate(None, b" -")):
                yield start, end


def _luhn_valid(digits: bytes) -> bool:
    values = digits.translate(_DIGIT_VALUE)
    total = sum(values[-1::-2]) + sum(values[-2::-2].translate(_LUHN_DOUBLED))
    return total % 10 == 0


def _apply(data: bytes, edits: list[_Edit]) -> bytes:
    """Replace the sorted, non-overlapping spans of `edits`."""
    pieces: list[bytes] = []
    done = 0
    for start, end, replacement in edits:
        pieces += (data[done:start], replacement)
        done = end
    pieces.append(data[done:])
    return b"".join(pieces)


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs: order and duplicate keys survive a rewrite."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(data: bytes) -> Any:
    """Strict JSON (UTF-8, no NaN) with exact numbers; raises ValueError."""
    return json.loads(
        data.decode("utf-8"),
        parse_float=Decimal,
        parse_constant=_reject_constant,
        object_pairs_hook=_Object,
    )


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(_loads(data), _Object)
    except (ValueError, RecursionError):
        return False


def _dumps(value: Any) -> bytes:
    """Compact JSON; a lone surrogate is written back as its \\u escape."""
    return "".join(_json_tokens(value)).encode("utf-8", "backslashreplace")


def _json_tokens(value: Any) -> Iterator[str]:
    if isinstance(value, _Object):
        yield "{"
        for index, (key, item) in enumerate(value):
            yield f"{',' if index else ''}{json.dumps(key, ensure_ascii=False)}:"
            yield from _json_tokens(item)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _json_tokens(item)
        yield "]"
    elif isinstance(value, str):
        yield json.dumps(value, ensure_ascii=False)
    elif value is None or isinstance(value, bool):
        yield json.dumps(value)
    else:  # int or Decimal, both exact
        yield str(value)
