"""Redaction of message bytes: no merchant secret and no full card number (PAN) is stored.

Policy ``p3log-redact/2``. The rules see what a JSON reader would see, whatever the bytes
are (any top-level value, any nesting depth, lenient JSON, invalid UTF-8), and edit the
bytes themselves:

- ``escapes_decoded``: every ``\\u`` escape that spells an ASCII character is first written
  as that character (``"merchant\\u0053ecret"`` is ``"merchantSecret"``, ``"\\u0034111…"`` is
  ``"4111…"``); ``\\"``, ``\\\\`` and control characters keep one canonical escape, and
  non-ASCII escapes stay as they are (they spell no digit, key or separator; the view the
  rules read blanks every remaining escape, so its hex digits are not read as digits). The
  decoded bytes are what the other rules match, and what is stored when any of them
  fired; when none did, the input is kept exactly as it arrived.
- ``merchant_secret``: the value of every key spelled ``merchantSecret`` in any case, with
  or without a ``_``, ``-``, ``.`` or space (``merchant_secret``, ``MerchantSecret``) becomes
  ``"[REDACTED merchantSecret hmac-sha256:<32 hex>]"``, a fingerprint keyed with the store's
  key, so an auditor can tell two secrets apart (or see one reused) without seeing either.
  A string that itself holds JSON (``"{\\"merchantSecret\\":\\"x\\"}"``) is decoded and
  redacted as a document of its own (up to `_MAX_NESTING` levels; deeper is `unchecked`).
- ``secret_reuse``: a value equal to a merchant secret seen in the same session (given by
  the caller as ``known``, or found earlier in the same message) becomes the same marker
  wherever it appears: anywhere as a substring when it has at least `MIN_SUBSTRING_SECRET`
  characters, else where it is a whole string value.
- ``pan``: a run of 13-19 ASCII digits (single spaces or dashes allowed between groups) that
  passes the Luhn check keeps its first 6 and last 4 digits; the others become ``*``. It is
  masked in strings, in raw bytes, and as a JSON number (``4111111111111111``,
  ``4111111111111111.0``, ``4.111111111111111e15``), which then becomes a string. In a run
  with separators every span of whole groups is a candidate; a run of more than
  `_MAX_GROUPS` groups is masked whole. More than 19 digits with no separator are an
  identifier. Kept: a 13-digit value of a protocol timestamp field (`TIMESTAMP_KEYS`) that is
  a plausible epoch-milliseconds time (`_EPOCH_MS`).
- ``unchecked``: fail closed. When a message needs more work than `WORK_BUDGET` steps
  (escapes, strings in lenient JSON, candidate runs, keys, reused secrets, brackets of a
  secret's value; a step costs a few microseconds, so this bounds the time one message
  holds the event loop to a few milliseconds), the whole message is replaced by one marker
  string.

Malformed bytes are judged conservatively: a secret value that does not end (an
unterminated string or container, an unterminated comment) is masked to the end of the
input. Cost: C-speed scans (``translate``, ``find``, ``lower``) over the input, then a
bounded number of Python steps per candidate. Bump `REDACTION_POLICY` whenever what the
rules match changes.
"""

from __future__ import annotations

import bisect
import functools
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Final

import attrs

from p3log.protocol.jsontext import strip_comments_and_trailing_commas

REDACTION_POLICY: Final = "p3log-redact/2"

ESCAPES_RULE: Final = "escapes_decoded"
MERCHANT_SECRET_RULE: Final = "merchant_secret"
SECRET_REUSE_RULE: Final = "secret_reuse"
PAN_RULE: Final = "pan"
HANDSHAKE_RULE: Final = "handshake_credential"
UNCHECKED_RULE: Final = "unchecked"
RESERIALIZED_RULE: Final = "reserialized"  # policy 1 only; events recorded under it keep it

WORK_BUDGET: Final = 1000
MIN_SUBSTRING_SECRET: Final = 6
TIMESTAMP_KEYS: Final = frozenset({"createdTimestamp"})
# Epoch milliseconds from 2001-09-09 to 2042-11-24: all 13 digits, and below every 13-digit
# card number a network issues (those start with 4).
_EPOCH_MS: Final = range(1_000_000_000_000, 2_300_000_000_000)
_MAX_NESTING: Final = 3

_ANY_MARKER: Final = re.compile(rb"\[REDACTED [A-Za-z]+ hmac-sha256:[0-9a-f]{32}\]")
_SECRET_MARKER: Final = re.compile(r"\[REDACTED merchantSecret hmac-sha256:[0-9a-f]{32}\]")
_UNCHECKED: Final = '"[REDACTED unchecked: {size} bytes need more than the redaction budget]"'

# A key naming the merchant secret, in the view (where escaped quotes are blanked).
_SECRET_KEY: Final = re.compile(rb'"merchant[-_. ]?secret"', re.IGNORECASE)
_SECRET_WORD: Final = b"secret"
_ESCAPED_SECRET_KEY: Final = re.compile(rb'\\"merchant[-_. ]?secret\\?"', re.IGNORECASE)
_NESTED_ESCAPE: Final = b"\\\\u"  # an escaped backslash before u: an escape one level down

# An escaped backslash (so that what follows it is not read as an escape), or an escape
# that spells an ASCII character.
_ESCAPE: Final = re.compile(rb"\\\\|\\/|\\u(00[0-7][0-9a-fA-F])")
_SHORT_ESCAPES: Final = {8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"}
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

# A bare value: a number, true, null, or in malformed bytes anything up to the next delimiter.
_BARE_VALUE: Final = re.compile(rb'[^\s,{}\[\]"](?:[^,{}\[\]"\r\n]*[^\s,{}\[\]"])?')
_STRING_OR_BRACKET: Final = re.compile(rb'"[^"]*"?|[\[\]{}]')
# In the view (no escaped quotes): a string, or a comment as the lenient reader reads one.
_COMMENT_OR_STRING: Final = re.compile(rb'"[^"]*"|//[^\n]*|/\*.*?\*/', re.DOTALL)
_NUMBER: Final = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_TIMESTAMP_KEY_BEFORE: Final = re.compile(
    rb'"(' + b"|".join(k.encode() for k in sorted(TIMESTAMP_KEYS)) + rb')"[ \t\r\n]*:[ \t\r\n]*"?\Z'
)

# A run: digit groups joined by single spaces or dashes. Possessive, so it never backtracks.
_RUN: Final = re.compile(rb"[0-9]++(?:[ -][0-9]++)*+")
# A run of 13 digits lies in a stretch of 13 or more digits, spaces and dashes; translate
# and find locate those at C speed, and only they are looked at further.
_RUN_CHARS_AS_ZERO: Final = bytes(0x30 if byte in b"0123456789 -" else 0x78 for byte in range(256))
_STRETCH: Final = b"0" * 13
# A number with an exponent where a JSON number can stand (after a delimiter) may spell a
# card with fewer digits; translated, such a number is "d0…e0", which a regex finds at C
# speed.
_EXPONENT_VIEW: Final = bytes(
    0x30
    if byte in b"0123456789.+-"
    else 0x65
    if byte in b"eE"
    else 0x64
    if byte in b":[, \t\r\n"
    else 0x78
    for byte in range(256)
)
_EXPONENT_NUMBER: Final = re.compile(rb"d0+e0")
# A stretch this long is not read group by group: every digit in it is masked, unless it
# is all digits (an identifier).
_LONG_STRETCH: Final = 1024
_DIGIT_GROUP: Final = re.compile(rb"[0-9]+")
# An escape (that stays: not ASCII) spelled with four decimal digits, then a digit group.
_DIGIT_ESCAPE: Final = re.compile(rb"\\u[0-9]{4}(?=[ -]?[0-9])")
_PAN_MIN, _PAN_MAX = 13, 19
_MAX_GROUPS: Final = 64
_KEEP_FIRST, _KEEP_LAST = 6, 4
_DIGIT_VALUE: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_LUHN_DOUBLED: Final = bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]).ljust(256, b"\0")
_DIGITS_TO_STARS: Final = bytes.maketrans(b"0123456789", b"*" * 10)


@attrs.frozen
class Redacted:
    """Redacted bytes, the rules that changed them (sorted, unique), and the merchant
    secrets found in them (decoded), for the caller's per-session memory."""

    data: bytes
    rules: tuple[str, ...]
    secrets: tuple[str, ...] = ()


class OverBudget(Exception):
    """A message needs more redaction work than `WORK_BUDGET`."""


class Budget:
    """Work left for one message; `spend` raises OverBudget when it runs out."""

    def __init__(self, steps: int = WORK_BUDGET) -> None:
        self.left = steps

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise OverBudget


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

    def marker(self, secret: str, name: str = "merchantSecret") -> str:
        """What replaces a credential: its name and its fingerprint."""
        return f"[REDACTED {name} hmac-sha256:{self.fingerprint(secret)}]"

    def redact(self, raw: bytes, known: Iterable[str] = ()) -> Redacted:
        """Redact one message as received; any bytes at all, never raises.

        `known` are merchant secrets seen earlier in the same session. Bytes that a JSON
        reader would read as UTF-16 or UTF-32 text (`json.loads` of bytes does) are
        also redacted as that text, in their own encoding."""
        known = tuple(known)
        budget = Budget()
        passes: list[_Pass] = []
        try:
            data, rules = raw, set()
            encoding = _wide_encoding(raw)
            if encoding is not None:
                passes.append(_Pass(self, known, budget, 0))
                wide = _redact_wide(passes[-1], raw, encoding)
                if wide is not None:
                    data, rules = wide.data, set(wide.rules)
            found = [secret for done in passes for secret in done.found]
            passes.append(_Pass(self, [*known, *found], budget, 0))
            result = passes[-1].run(data)
        except OverBudget:
            # The secrets found before the budget ran out are still remembered.
            return unchecked(len(raw), tuple(s for done in passes for s in done.found))
        secrets = tuple(dict.fromkeys(s for done in passes for s in done.found))
        return Redacted(result.data, tuple(sorted(rules | set(result.rules))), secrets)


def _wide_encoding(raw: bytes) -> str | None:
    """The UTF-16 or UTF-32 encoding a JSON reader would read `raw` in (RFC 7159's rule,
    as `json.detect_encoding`), with the byte order a BOM gives; None for UTF-8."""
    if len(raw) < 2 or (raw[0] and raw[1] and not raw.startswith((b"\xff\xfe", b"\xfe\xff"))):
        return None
    encoding = json.detect_encoding(raw)
    if encoding == "utf-16":
        return "utf-16-le" if raw.startswith(b"\xff\xfe") else "utf-16-be"
    if encoding == "utf-32":
        return "utf-32-le" if raw.startswith(b"\xff\xfe\0\0") else "utf-32-be"
    return None if encoding.startswith("utf-8") else encoding


def _redact_wide(redaction: _Pass, raw: bytes, encoding: str) -> Redacted | None:
    """`raw` redacted as the UTF-16 or UTF-32 text it spells (None if it spells none, or
    nothing in it needed redacting); a trailing partial code unit is kept."""
    unit = 4 if "32" in encoding else 2
    cut = len(raw) - len(raw) % unit
    try:
        text = raw[:cut].decode(encoding, "surrogatepass")
    except UnicodeDecodeError:
        return None
    result = redaction.run(text.encode("utf-8", "surrogatepass"))
    if not result.rules:
        return None
    try:
        wide = result.data.decode("utf-8", "surrogatepass").encode(encoding, "surrogatepass")
    except UnicodeError:  # cannot be written back in its encoding: fail closed
        return unchecked(len(raw))
    return Redacted(wide + raw[cut:], result.rules)


def unchecked(size: int, secrets: tuple[str, ...] = ()) -> Redacted:
    """What replaces a message that could not be checked: one marker string."""
    return Redacted(_UNCHECKED.format(size=size).encode(), (UNCHECKED_RULE,), secrets)


def holds_fingerprint(text: str) -> bool:
    """Whether `text` holds a keyed marker anywhere (`[REDACTED … hmac-sha256:…]`)."""
    return _ANY_MARKER.search(text.encode("utf-8", "surrogatepass")) is not None


def is_marker(text: str) -> bool:
    """Whether `text` is already a redaction marker (so redacting twice changes nothing)."""
    return _ANY_MARKER.fullmatch(text.encode("utf-8", "surrogatepass")) is not None


@attrs.frozen(order=True)
class _Edit:
    start: int
    end: int
    replacement: bytes = attrs.field(order=False)
    rule: str = attrs.field(order=False)


class _Pass:
    """One redaction of one document (a nested one gets a pass of its own)."""

    def __init__(
        self, redactor: Redactor, known: Iterable[str], budget: Budget, depth: int
    ) -> None:
        self._redactor = redactor
        self._known = [s for s in known if s and not is_marker(s)]
        self._budget = budget
        self._depth = depth
        self.found: list[str] = []

    def run(self, raw: bytes) -> Redacted:
        data = raw
        if b"\\" in raw:
            self._budget.spend(raw.count(b"\\") // 16)  # reading an escape: 1/16 of a step
            data = _decode_escapes(raw, self._budget)
        # Two views of `data`, byte for byte the same length: `view` with escapes blanked
        # (card numbers are looked for there, comments included), `structure` also with
        # lenient JSON's comments blanked (strings and keys are found there).
        view = _blank_escapes(data) if b"\\" in data else data
        structure = view
        if b"/" in view and (b"/*" in view or b"//" in view):  # memchr first: far cheaper
            structure = _blank_comments(view, self._budget)
        markers = _ANY_MARKER.finditer(view) if b"[REDACTED" in view else ()
        protected = [(m.start(), m.end()) for m in markers]
        quotes = _QuoteParity(structure)
        edits: list[_Edit] = []
        secret_spans: list[tuple[int, int]] = []
        lowered = data.lower()
        backslash = b"\\" in data
        if _SECRET_WORD in lowered:
            edits += self._secret_keys(data, structure, secret_spans)
            edits += self._nested(data, structure, quotes, _SECRET_WORD, secret_spans)
            if structure is not view:
                edits += self._commented_secrets(view, structure)
            if backslash and b'\\"' in data:
                edits += self._escaped_secret_keys(data, quotes)
        if backslash and _NESTED_ESCAPE in data:
            edits += self._nested(data, structure, quotes, _NESTED_ESCAPE, secret_spans)
        edits += self._reused_secrets(data, quotes, secret_spans)
        edits += _card_edits(data, view, quotes, self._budget, backslash)
        # A reused secret is not looked for in a marker's words (it may be one of them);
        # card numbers are, since a marker's look-alike could carry one, and so is a
        # secret in its hex digits, which then replaces the whole look-alike.
        edits = [edit for e in edits if (edit := _outside_markers(e, protected)) is not None]
        if not edits:
            return Redacted(raw, (), tuple(self.found))
        merged, rules = _merged(data, edits)
        if data != raw:
            rules.add(ESCAPES_RULE)
        return Redacted(_apply(data, merged), tuple(sorted(rules)), tuple(self.found))

    def _secret_keys(
        self, data: bytes, view: bytes, spans: list[tuple[int, int]]
    ) -> Iterator[_Edit]:
        """The values of merchant-secret keys; their spans go to `spans`."""
        for key in _SECRET_KEY.finditer(view):
            self._budget.spend(4)
            if spans and key.start() < spans[-1][1]:
                continue  # the "key" is text inside the previous secret value
            start = _after_colon(view, key.end())
            if start is None:
                continue  # a string that names the key, not a key
            end = _value_end(view, start, self._budget)
            if end == start:
                continue  # no value to hide
            spans.append((start, end))
            secret = _secret_text(data[start:end])
            if _SECRET_MARKER.fullmatch(secret):
                continue
            self.found.append(secret)
            marker = json.dumps(self._redactor.marker(secret)).encode()
            yield _Edit(start, end, marker, MERCHANT_SECRET_RULE)

    def _commented_secrets(self, view: bytes, structure: bytes) -> Iterator[_Edit]:
        """A merchant-secret key inside a comment (which a lenient reader skips, but the
        raw bytes keep): the rest of that comment becomes the marker of what it holds."""
        self._budget.spend(view.count(b'"') // 16)
        for comment in _COMMENT_OR_STRING.finditer(view):
            text = comment.group()
            if text.startswith(b'"') or _SECRET_KEY.search(text) is None:
                continue
            key = _SECRET_KEY.search(text)
            assert key is not None
            start = comment.start() + key.end()
            end = comment.end() - 2 if text.startswith(b"/*") else comment.end()
            held = view[start:end].decode("utf-8", "surrogateescape").strip(' :\t\r\n"')
            if held and not is_marker(held):  # redacted already: an import of the event
                marker = json.dumps(self._redactor.marker(held)).encode()
                yield _Edit(start, end, b" " + marker + b" ", MERCHANT_SECRET_RULE)

    def _escaped_secret_keys(self, data: bytes, quotes: _QuoteParity) -> Iterator[_Edit]:
        """A merchant-secret key spelled with escaped quotes outside any string (escaped
        JSON in bytes that are not JSON, which a reader unescaping once reads): what
        follows it is masked to the end of the input (fail closed)."""
        for key in _ESCAPED_SECRET_KEY.finditer(data):
            self._budget.spend()
            if not quotes.inside(key.start()):
                rest = data[key.end() :].decode("utf-8", "surrogateescape")
                if not is_marker(rest.strip(' :\t\r\n"')):  # not redacted already
                    marker = json.dumps(self._redactor.marker(rest)).encode()
                    yield _Edit(key.end(), len(data), marker, MERCHANT_SECRET_RULE)
                return

    def _nested(
        self,
        data: bytes,
        view: bytes,
        quotes: _QuoteParity,
        needle: bytes,
        spans: list[tuple[int, int]],
    ) -> Iterator[_Edit]:
        """Strings holding `needle` may hold JSON (or escapes) a second reader would see:
        each is decoded and redacted as a document of its own."""
        haystack = data.lower() if needle == _SECRET_WORD else data
        at = haystack.find(needle)
        done = -1
        while at >= 0:
            self._budget.spend()
            if at > done and quotes.inside(at):
                start = view.rfind(b'"', 0, at)
                end = view.find(b'"', at)
                end = len(data) if end < 0 else end + 1
                done = end
                edit = self._redact_string(data, start, end)
                if edit is not None:
                    spans.append((start, end))
                    yield edit
            at = haystack.find(needle, at + 1)

    def _redact_string(self, data: bytes, start: int, end: int) -> _Edit | None:
        literal = data[start:end]
        try:
            text = json.loads(literal.decode("utf-8", "surrogateescape"))
            if not isinstance(text, str):
                raise ValueError
        except ValueError:
            return _Edit(start, end, b'"[REDACTED unreadable string]"', UNCHECKED_RULE)
        if self._depth + 1 >= _MAX_NESTING:
            return _Edit(start, end, b'"[REDACTED nested too deeply]"', UNCHECKED_RULE)
        inner = _Pass(self._redactor, [*self._known, *self.found], self._budget, self._depth + 1)
        result = inner.run(_to_bytes(text))
        self.found += inner.found
        if not result.rules:
            return None
        rule = next((r for r in result.rules if r != ESCAPES_RULE), result.rules[0])
        decoded = result.data.decode("utf-8", "surrogateescape")
        return _Edit(start, end, _json_string(decoded), rule)

    def _reused_secrets(
        self, data: bytes, quotes: _QuoteParity, secret_spans: list[tuple[int, int]]
    ) -> Iterator[_Edit]:
        """Every other place where a known (or just found) secret appears."""
        for secret in dict.fromkeys([*self._known, *self.found]):
            if _SECRET_MARKER.fullmatch(secret):
                continue
            whole = len(secret) < MIN_SUBSTRING_SECRET
            marker = self._redactor.marker(secret)
            for start, end in _SecretSearch.of(secret, whole).spans(data, self._budget):
                if not any(s < end and start < t for s, t in secret_spans):
                    # Inside a decoded string (depth > 0) the text is a string's content:
                    # a marker there needs no quotes of its own.
                    bare = whole or self._depth > 0 or quotes.inside(start)
                    text = marker.encode() if bare else _quoted(marker)
                    yield _Edit(start, end, text, SECRET_REUSE_RULE)


@attrs.frozen
class _SecretSearch:
    """Where a secret appears in canonical bytes, in any spelling (ASCII as
    `_decode_escapes` writes it, a control character, quote or backslash also as itself,
    as bytes that are not JSON hold it, any other character as itself or as its \\u escapes, in
    either case; `whole`: only as the whole of a string).

    A regex scan of the whole message per secret would cost milliseconds a MiB, so its
    longest ASCII part (which has one spelling) is found with `find` at C speed, and the
    regex only tries the few bytes around each place it occurs."""

    pattern: re.Pattern[bytes]
    anchor: bytes
    before: int  # at most this many bytes of the secret come before the anchor
    after: int

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def of(secret: str, whole: bool) -> _SecretSearch:
        body = b"".join(_spellings(char) for char in secret)
        pattern = re.compile(rb'(?<=")' + body + rb'(?=\\*")' if whole else body)
        runs = re.findall(r"[\x20\x21\x23-\x5b\x5d-\x7e]+", secret)  # one spelling only
        if not runs:
            return _SecretSearch(pattern, b"", 0, 0)
        run = max(runs, key=len)
        at = secret.index(run)
        before = sum(_longest_spelling(char) for char in secret[:at]) + 1
        after = sum(_longest_spelling(char) for char in secret[at + len(run) :]) + 16
        return _SecretSearch(pattern, _json_string(run)[1:-1], before, after)

    def spans(self, data: bytes, budget: Budget) -> Iterator[tuple[int, int]]:
        if not self.anchor:  # no ASCII at all: the regex scans everything
            budget.spend(len(data) // 4096)
            for found in self.pattern.finditer(data):
                budget.spend()
                yield found.span()
            return
        done = 0
        at = data.find(self.anchor)
        while at >= 0:
            budget.spend()
            low = max(done, at - self.before)
            for found in self.pattern.finditer(data, low, at + len(self.anchor) + self.after):
                if found.start() <= at:  # a match that holds this anchor
                    done = found.end()
                    yield found.span()
            at = data.find(self.anchor, max(at + 1, done))


def _longest_spelling(char: str) -> int:
    return 12 if ord(char) > 0xFFFF else 6


def _spellings(char: str) -> bytes:
    code = ord(char)
    if code < 0x80:  # a control character, quote or backslash also as itself (not JSON)
        spelled = _json_string(char)[1:-1]
        if spelled == char.encode():
            return re.escape(spelled)
        return b"(?:" + re.escape(spelled) + b"|" + re.escape(char.encode()) + b")"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept as it was
        return b"(?:" + re.escape(bytes([code - 0xDC00])) + b"|" + _escaped_unit(code) + b")"
    if 0xD800 <= code < 0xE000:  # a lone surrogate: only an escape spells it
        return _escaped_unit(code)
    units = char.encode("utf-16-be")
    halves = [int.from_bytes(units[i : i + 2]) for i in range(0, len(units), 2)]
    escapes = b"".join(_escaped_unit(half) for half in halves)
    return b"(?:" + re.escape(char.encode()) + b"|" + escapes + b")"


def _escaped_unit(code: int) -> bytes:
    return b"\\\\u(?i:" + b"%04x" % code + b")"


class _QuoteParity:
    """Whether a position lies inside a string literal, by counting the quotes before it
    (the view has no escaped quotes). Positions are asked in any order; counting resumes
    from the last answer, so asking in order is linear."""

    def __init__(self, view: bytes) -> None:
        self._view = view
        self._at = 0
        self._count = 0

    def inside(self, position: int) -> bool:
        if position >= self._at:
            self._count += self._view.count(b'"', self._at, position)
        else:
            self._count -= self._view.count(b'"', position, self._at)
        self._at = position
        return self._count % 2 == 1


def _decode_escapes(raw: bytes, budget: Budget) -> bytes:
    """`raw` with each ASCII escape in its canonical spelling (see the module doc)."""
    # An escape costs about a quarter of a step; count the ASCII ones only when a rough
    # count says they might exhaust the budget (non-ASCII escapes are common and free).
    escapes = raw.count(b"\\u00")
    if escapes // 4 > budget.left:
        escapes = sum(raw.count(b"\\u00%d" % digit) for digit in range(8))
    budget.spend(escapes // 4)
    return _ESCAPE.sub(_canonical_escape, raw)


def _canonical_escape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code is None:  # an escaped backslash stays one; an escaped solidus is one
        return b"/" if match.group() == b"\\/" else match.group()
    return _canonical_char(int(code, 16))


def _canonical_char(code: int) -> bytes:
    if code < 0x20:
        return _SHORT_ESCAPES.get(code, b"\\u%04x" % code)
    if code == 0x22:
        return b'\\"'
    if code == 0x5C:
        return b"\\\\"
    return bytes([code])


def _blank_escapes(data: bytes) -> bytes:
    """`data` with every escape sequence blanked, same length: a quote left is a real one,
    and an escape's letters and hex digits are not mistaken for text. A backslash that
    starts no JSON escape (`\\4`, `\\*`, one before a newline) is blanked alone: what
    follows it is what a reader sees (a digit of a card number, the end of a comment)."""
    view = data.replace(b"\\\\", b"\x01\x01")
    view = re.sub(rb"\\u[0-9a-fA-F]{4}", b"\x01" * 6, view)
    view = re.sub(rb'\\["/bfnrt]', b"\x01\x01", view)
    return view.replace(b"\\", b"\x01")


def _blank_comments(view: bytes, budget: Budget) -> bytes:
    """`view` with the comments and trailing commas that the recorder's lenient JSON reader
    accepts blanked (the same rule), same length."""
    budget.spend(view.count(b'"') // 16)  # a string costs a sixteenth of a step
    return strip_comments_and_trailing_commas(view.decode("latin-1")).encode("latin-1")


def _after_colon(view: bytes, at: int) -> int | None:
    """Where the value after a key starts, skipping blanks, comments and the colon;
    None if no colon follows; an unterminated comment's start (which `_value_end` takes
    to run to the end of the input)."""
    colon = False
    size = len(view)
    while at < size:
        char = view[at]
        if char in b" \t\r\n":
            at += 1
        elif view.startswith(b"//", at):
            newline = view.find(b"\n", at)
            at = size if newline < 0 else newline + 1
        elif view.startswith(b"/*", at):
            close = view.find(b"*/", at + 2)
            if close < 0:
                return at  # the caller masks from here to the end
            at = close + 2
        elif char == 0x3A and not colon:  # ":"
            colon = True
            at += 1
        else:
            break
    return at if colon else None


def _value_end(view: bytes, start: int, budget: Budget) -> int:
    """Where the JSON value starting at `start` ends (== start if there is none); a value
    that does not end runs to the end of the input."""
    if start >= len(view):
        return start
    if view.startswith(b"/*", start):
        return len(view)  # an unterminated comment: whatever follows may be the value
    first = view[start]
    if first == 0x22:  # a string: the view has no escaped quotes
        close = view.find(b'"', start + 1)
        return len(view) if close < 0 else close + 1
    if first in b"{[":
        depth = 0
        for token in _STRING_OR_BRACKET.finditer(view, start):
            budget.spend()
            bracket = token.group()
            if bracket in (b"{", b"["):
                depth += 1
            elif bracket in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return token.end()
        return len(view)
    bare = _BARE_VALUE.match(view, start)
    return start if bare is None else bare.end()


def _secret_text(literal: bytes) -> str:
    """The decoded value that a secret's fingerprint covers."""
    text = literal.decode("utf-8", "surrogateescape")
    try:
        value = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError):
        return text[1:] if text.startswith('"') else text  # cut short: the rest is the value
    return value if isinstance(value, str) else text


def _json_string(text: str) -> bytes:
    """`text` as a JSON string literal in the canonical spelling `_decode_escapes` writes
    (a lone surrogate, also one that stood for a byte that was not UTF-8, as its escape)."""
    return _SURROGATE.sub(_escape_surrogate, json.dumps(text, ensure_ascii=False)).encode()


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _to_bytes(text: str) -> bytes:
    """Decoded text back as bytes: bytes that were not UTF-8 as they were."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _quoted(text: str) -> bytes:
    return json.dumps(text).encode()


def _card_edits(
    data: bytes, view: bytes, quotes: _QuoteParity, budget: Budget, backslash: bool = True
) -> list[_Edit]:
    """Edits that mask card numbers in strings, numbers and raw bytes (`backslash`:
    whether `data` has one, so escapes may hold digits)."""
    edits = []
    for start, end in _digit_runs(view):
        budget.spend()
        run = view[start:end]
        masked = _mask_run(run, budget)
        if masked is None and view[end : end + 1] == b"." and not quotes.inside(start):
            edit = _exponent_edit(view, start - (view[start - 1 : start] == b"-"), quotes)
            if edit is not None:  # a fraction that a reader rounds to a card number
                edits.append(edit)
            continue
        if masked is None or _is_timestamp(view, start, run):
            continue
        if quotes.inside(start):
            edits.append(_Edit(start, end, masked, PAN_RULE))
        else:
            edits.append(_number_edit(view, start, end, masked))
    exponents = view.translate(_EXPONENT_VIEW)
    # After a leading "d" (the start counts as a delimiter), a match's start in these
    # bytes is its first digit's position in `view`.
    numbers = _EXPONENT_NUMBER.finditer(b"d" + exponents) if b"0e0" in exponents else ()
    for number in numbers:
        budget.spend()
        edit = _exponent_edit(view, number.start(), quotes)
        if edit is not None:
            edits.append(edit)
    if backslash and b"\\u" in data:
        edits += _escape_digit_edits(data, view, budget)
    return edits


def _escape_digit_edits(data: bytes, view: bytes, budget: Budget) -> list[_Edit]:
    """Card numbers whose digits run on into the hex digits of an escape that stays
    (`\\u4111` then `111111111111`: a reader sees no card number, but the bytes hold its
    digits in sequence). The digits outside the escape are masked 6/4; an escape whose
    own hex digits would be masked becomes U+FFFD."""
    escapes = []
    for escape in _DIGIT_ESCAPE.finditer(data.replace(b"\\\\", b"\x01\x01")):
        budget.spend()  # so a message of such escapes is unchecked after the budget's worth
        escapes.append(escape.start())
    if not escapes:
        return []
    hex_view = bytearray(view)
    for at in escapes:
        hex_view[at + 2 : at + 6] = data[at + 2 : at + 6]
    edits = []
    for start, end in _digit_runs(bytes(hex_view)):
        # The escapes whose hex digits lie in this run (none: the view found it already).
        inside = escapes[bisect.bisect_left(escapes, start - 5) : bisect.bisect_left(escapes, end)]
        inside = [at for at in inside if at + 2 < end and at + 6 > start]
        if not inside:
            continue
        budget.spend()
        run = bytes(hex_view[start:end])
        masked = _mask_run(run, budget)
        if masked is None:
            continue
        out = bytearray(data[start:end])
        for offset, (before, after) in enumerate(zip(run, masked, strict=True)):
            if before != after:
                out[offset] = after
        for at in inside:
            if any(out[p - start] == 0x2A for p in range(max(at + 2, start), min(at + 6, end))):
                for p in range(max(at, start), min(at + 6, end)):  # the escape becomes U+FFFD
                    out[p - start] = b"\\ufffd"[p - at]
        edits.append(_Edit(start, end, bytes(out), PAN_RULE))
    return edits


def _is_timestamp(view: bytes, start: int, run: bytes) -> bool:
    """A plausible epoch-ms value of a field the protocol defines as a timestamp."""
    if len(run) != 13 or not run.isdigit() or int(run) not in _EPOCH_MS:
        return False
    return _TIMESTAMP_KEY_BEFORE.search(view, max(0, start - 40), start) is not None


def _number_edit(view: bytes, start: int, end: int, masked: bytes) -> _Edit:
    """Outside a string: a JSON number becomes the masked digits as a string."""
    token = _NUMBER.match(view, start - 1 if start and view[start - 1] == 0x2D else start)
    if token is not None and token.end() >= end and b" " not in masked:
        return _Edit(token.start(), token.end(), b'"' + masked + b'"', PAN_RULE)
    return _Edit(start, end, masked, PAN_RULE)


def _exponent_edit(view: bytes, start: int, quotes: _QuoteParity) -> _Edit | None:
    """A number with an exponent (or a fraction) whose value is a card number: exactly,
    or as the float a JSON reader rounds it to (`4111111111111110.9999999` is read as
    4111111111111111.0) when it stands outside a string."""
    token = _NUMBER.match(view, start)
    if token is None:
        return None
    try:
        value = Decimal(token.group().decode())
    except InvalidOperation:
        return None
    inside = quotes.inside(token.start())
    if not (_PAN_MIN - 2 <= value.adjusted() <= _PAN_MAX - 1):
        return None
    if value == value.to_integral_value():
        digits = str(abs(int(value))).encode()
    elif not inside and float(value).is_integer():
        digits = str(abs(int(float(value)))).encode()
    else:
        return None
    if not (_PAN_MIN <= len(digits) <= _PAN_MAX) or not _luhn_valid(digits):
        return None
    masked = _mask_digits(digits, 0, len(digits))
    return _Edit(token.start(), token.end(), masked if inside else b'"' + masked + b'"', PAN_RULE)


def _digit_runs(view: bytes) -> Iterator[tuple[int, int]]:
    """The runs of 13 or more digits, without a regex scan of ordinary text."""
    stretches = view.translate(_RUN_CHARS_AS_ZERO)
    start = stretches.find(_STRETCH)
    while start >= 0:
        end = stretches.find(b"x", start)
        end = len(view) if end < 0 else end
        if end - start > _LONG_STRETCH:
            if not view[start:end].isdigit():
                yield start, end
        else:
            for run in _RUN.finditer(view, start, end):
                text = run.group()
                if len(text) - text.count(b" ") - text.count(b"-") >= _PAN_MIN:
                    yield run.start(), run.end()
        start = stretches.find(_STRETCH, end)


def _mask_run(run: bytes, budget: Budget) -> bytes | None:
    """The run with every card number in it masked, or None if it holds none."""
    if run.isdigit():  # the common case: a timestamp, an identifier, a card number
        if _PAN_MIN <= len(run) <= _PAN_MAX and _luhn_valid(run):
            return _mask_digits(run, 0, len(run))
        return None
    if len(run) > _LONG_STRETCH or run.count(b" ") + run.count(b"-") >= _MAX_GROUPS:
        # Nobody writes so many digit groups in a row; rather than try up to 19 spans per
        # group, mask every digit.
        return run.translate(_DIGITS_TO_STARS)
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(run)]
    budget.spend(len(groups) // 8)
    masked = run
    for first, (start, _) in enumerate(groups):
        digits = 0
        for group_start, end in groups[first : first + _PAN_MAX]:
            digits += end - group_start
            if digits > _PAN_MAX:
                break
            if digits >= _PAN_MIN and _luhn_valid(run[start:end].translate(None, b" -")):
                masked = _mask_digits(masked, start, end)
    return None if masked is run else masked


def _mask_digits(run: bytes, start: int, end: int) -> bytes:
    """`run` with the digits of [start, end) masked, the first 6 and last 4 kept."""
    positions = [i for i in range(start, end) if 0x30 <= run[i] <= 0x39 or run[i] == 0x2A]
    masked = bytearray(run)
    for i in positions[_KEEP_FIRST : len(positions) - _KEEP_LAST]:
        masked[i] = 0x2A  # "*"
    return bytes(masked)


def _luhn_valid(digits: bytes) -> bool:
    values = digits.translate(_DIGIT_VALUE)
    total = sum(values[-1::-2]) + sum(values[-2::-2].translate(_LUHN_DOUBLED))
    return total % 10 == 0


def _outside_markers(edit: _Edit, markers: list[tuple[int, int]]) -> _Edit | None:
    """A reused secret's edit as it applies around markers: dropped where it matches a
    marker's words, the whole marker where it touches the marker's 32 hex digits."""
    if edit.rule != SECRET_REUSE_RULE:
        return edit
    for start, end in markers:
        if start < edit.end and edit.start < end:
            if edit.end <= end - 33:  # within "[REDACTED <name> hmac-sha256:"
                return None
            return _Edit(start, end, edit.replacement.strip(b'"'), SECRET_REUSE_RULE)
    return edit


def _merged(data: bytes, edits: list[_Edit]) -> tuple[list[_Edit], set[str]]:
    """Sorted, non-overlapping edits, and the rules that changed something: an edit that
    starts inside an earlier one is folded into it (and names no rule of its own unless
    it reaches beyond that one, where it keeps no digit)."""
    merged: list[_Edit] = []
    rules: set[str] = set()
    for edit in sorted(edits, key=lambda e: (e.start, -e.end)):
        if merged and edit.start < merged[-1].end:
            last = merged[-1]
            if edit.end > last.end:
                tail = data[last.end : edit.end].translate(_DIGITS_TO_STARS)
                merged[-1] = attrs.evolve(last, end=edit.end, replacement=last.replacement + tail)
                rules.add(edit.rule)
            continue
        merged.append(edit)
        rules.add(edit.rule)
    return merged, rules


def _apply(data: bytes, edits: list[_Edit]) -> bytes:
    """Replace the sorted, non-overlapping spans of `edits`."""
    pieces: list[bytes] = []
    done = 0
    for edit in edits:
        pieces += (data[done : edit.start], edit.replacement)
        done = edit.end
    pieces.append(data[done:])
    return b"".join(pieces)
