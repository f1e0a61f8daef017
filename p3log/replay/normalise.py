"""What makes two P3 messages "the same" for a replay: volatile paths and normal forms.

Serve mode matches a live POS message against the recording, drive mode a live
server message, and `p3log diff` compares two runs; all three ask this module. A
message is compared as its whole decoded JSON object (type, resource, body, status,
unknown keys included) after the values at *volatile paths* are replaced by
`VOLATILE`: values that legitimately differ between two runs of the same
conversation. A volatile key that is present still has to be present (and one that
is absent, absent); only its value is ignored.

Paths are dotted key names from the message's root: `*` stands for any one key or
list index, `**` for any number of levels (also none), a number for a list index.
`**.createdTimestamp` is every `createdTimestamp`; `tag` is only the envelope's.

Numbers compare by value (`5.0` equals `5`), but `true` never equals `1`: the
comparable form is canonical JSON text, not Python equality.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from p3log.protocol import jsontext
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.model import body_key

__all__ = [
    "VOLATILE",
    "Difference",
    "JsonPath",
    "VolatilePaths",
    "comparable",
    "decode_object",
    "differences",
    "first_difference",
    "format_path",
    "normalise",
]

#: What a volatile value becomes in the normal form.
VOLATILE = "<volatile>"
#: What `first_difference` reports for a key one side does not have.
ABSENT = "<absent>"

PathStep = str | int


@attrs.frozen
class JsonPath:
    """One path pattern, e.g. `**.transaction.identifier` (see the module doc)."""

    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Read a dotted pattern; raises ValueError for an empty one or an empty segment."""
        segments = tuple(text.strip().split("."))
        if not text.strip() or any(not segment for segment in segments):
            raise ValueError(f"{text!r} is not a JSON path (dotted names, * and ** allowed)")
        return cls(segments)

    def matches(self, path: tuple[PathStep, ...]) -> bool:
        """Whether the concrete `path` (keys and list indices) is one this pattern names."""
        last = self.segments[-1]
        # A named last segment must name the path's last step: this check alone turns
        # away nearly every node of a message, before the walk a leading `**` costs.
        if last != "*" and last != "**" and (not path or str(path[-1]) != last):
            return False
        return _matches(self.segments, path)

    def __str__(self) -> str:
        return ".".join(self.segments)


def _matches(pattern: tuple[str, ...], path: tuple[PathStep, ...]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, path[skip:]) for skip in range(len(path) + 1))
    if not path:
        return False
    step = path[0]
    if head == "*" or head == str(step):
        return _matches(rest, path[1:])
    return False


@attrs.frozen
class VolatilePaths:
    """The set of paths whose values a comparison ignores."""

    paths: tuple[JsonPath, ...]
    # Asked for every node of every message compared, and P3 messages repeat their
    # paths: the answers, by path (a cache keyed by the patterns too would hash them
    # all on every question).
    _seen: dict[tuple[PathStep, ...], bool] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )

    @classmethod
    def default(cls, dialect: Dialect = DEFAULT_DIALECT) -> VolatilePaths:
        """The default set (docs/replay.md says why each one is there):

        - `tag`: every request gets a fresh tag from its client;
        - `**.createdTimestamp`: a clock reading;
        - `**.transaction.identifier`, `**.referencedTransactionIdentifier`: server-issued
          ids, which another server run (or `--fresh-ids`) issues anew;
        - `**.merchantSecret`: the store holds only a keyed fingerprint of it, so a
          recorded login never equals a live one;
        - the signature image (`submitSignatureRequest.signature`, dialect's key): it
          is different for every shopper; signing *on the receipt* instead of with an
          image is still a difference, as the key differs;
        - the abort body's execute tag (`body_tag` correlation): a tag.
        """
        abort_body = body_key(dialect.abort.request_type)
        texts = (
            "tag",
            "**.createdTimestamp",
            "**.transaction.identifier",
            "**.referencedTransactionIdentifier",
            "**.merchantSecret",
            f"submitSignatureRequest.{dialect.signature.signature_key}",
            f"{abort_body}.{dialect.abort.tag_key}",
        )
        return cls(tuple(JsonPath.parse(text) for text in texts))

    @classmethod
    def between_runs(cls, dialect: Dialect = DEFAULT_DIALECT) -> VolatilePaths:
        """The default set, and what a live server makes anew on every run: drive mode
        compares a live server's messages, and `p3log diff` two runs, with these.

        - the receipts' date and time (`data.DATE.value`, `data.TIME.value`): a clock
          reading, like `createdTimestamp`;
        - the receipts' preformatted `lines`: they print the date, the time and the
          identifier; the `data` items carry the same content and are compared one
          by one.
        """
        texts = [
            f"**.{receipt}.{path}"
            for receipt in ("merchantReceipt", "customerReceipt")
            for path in ("data.DATE.value", "data.TIME.value", "lines")
        ]
        return cls.default(dialect).adding(texts)

    def adding(self, texts: Iterable[str]) -> VolatilePaths:
        """These paths and `texts` too (raises ValueError for a bad path)."""
        extra = [JsonPath.parse(text) for text in texts]
        return VolatilePaths(self.paths + tuple(p for p in extra if p not in self.paths))

    def without(self, texts: Iterable[str]) -> VolatilePaths:
        """These paths but `texts`, which must be among them (else ValueError)."""
        drop = [JsonPath.parse(text) for text in texts]
        for path in drop:
            if path not in self.paths:
                known = ", ".join(str(p) for p in self.paths)
                raise ValueError(f"{path} is not a volatile path (they are: {known})")
        return VolatilePaths(tuple(p for p in self.paths if p not in drop))

    def matches(self, path: tuple[PathStep, ...]) -> bool:
        """Whether one of the paths names `path`."""
        found = self._seen.get(path)
        if found is None:
            if len(self._seen) >= _SEEN_LIMIT:
                self._seen.clear()
            found = self._seen[path] = any(pattern.matches(path) for pattern in self.paths)
        return found

    def __str__(self) -> str:
        return ", ".join(str(path) for path in self.paths)


_SEEN_LIMIT = 1 << 16  # paths remembered per set (a hostile peer's keys are endless)


def decode_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object in `data` (the documentation's lenient JSON accepted), else None.

    Comparison is about content, not syntax: a message that needed leniency compares
    equal to its strict spelling.
    """
    try:
        obj, _ = jsontext.loads(data.decode("utf-8"), lenient=True)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def normalise(obj: Mapping[str, Any], volatile: VolatilePaths) -> dict[str, Any]:
    """A copy of the message `obj` with every volatile value replaced by `VOLATILE`."""
    result = _normalise(dict(obj), (), volatile)
    assert isinstance(result, dict)
    return result


def _normalise(value: Any, path: tuple[PathStep, ...], volatile: VolatilePaths) -> Any:
    if path and volatile.matches(path):
        return VOLATILE
    if isinstance(value, dict):
        return {key: _normalise(item, (*path, key), volatile) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item, (*path, index), volatile) for index, item in enumerate(value)]
    return value


def comparable(obj: Mapping[str, Any], volatile: VolatilePaths) -> str:
    """The normal form of a message as one string: equal strings, equal messages."""
    return canonical(normalise(obj, volatile))


def canonical(value: Any) -> str:
    """Canonical JSON text: keys sorted, numbers by value (`5.0` and `5` alike)."""
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{json.dumps(k)}:{canonical(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | Decimal):
        number = Decimal(value)
        if number == number.to_integral_value():
            return str(int(number))
        return str(number.normalize())
    return json.dumps(value)


@attrs.frozen
class Difference:
    """Where two normalised messages first differ, and the two values there."""

    path: str
    recorded: Any
    got: Any

    def __str__(self) -> str:
        return f"{self.path}: recorded {_short(self.recorded)}, got {_short(self.got)}"


def first_difference(recorded: Any, got: Any, path: tuple[PathStep, ...] = ()) -> Difference | None:
    """The first place (keys in sorted order) where two normalised values differ."""
    if isinstance(recorded, dict) and isinstance(got, dict):
        for key in sorted(recorded.keys() | got.keys()):
            found = first_difference(recorded.get(key, ABSENT), got.get(key, ABSENT), (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(got, list):
        for index in range(max(len(recorded), len(got))):
            left = recorded[index] if index < len(recorded) else ABSENT
            right = got[index] if index < len(got) else ABSENT
            found = first_difference(left, right, (*path, index))
            if found is not None:
                return found
        return None
    if canonical(recorded) == canonical(got):
        return None
    return Difference(format_path(path), recorded, got)


def differences(recorded: Any, got: Any, path: tuple[PathStep, ...] = ()) -> list[Difference]:
    """Every place (keys in sorted order) where two normalised values differ: the
    leaves that differ, a key one side lacks (as `ABSENT`), or a value whose JSON type
    differs, each once."""
    if isinstance(recorded, dict) and isinstance(got, dict):
        found: list[Difference] = []
        for key in sorted(recorded.keys() | got.keys()):
            left, right = recorded.get(key, ABSENT), got.get(key, ABSENT)
            found += differences(left, right, (*path, key))
        return found
    if isinstance(recorded, list) and isinstance(got, list):
        found = []
        for index in range(max(len(recorded), len(got))):
            left = recorded[index] if index < len(recorded) else ABSENT
            right = got[index] if index < len(got) else ABSENT
            found += differences(left, right, (*path, index))
        return found
    if canonical(recorded) == canonical(got):
        return []
    return [Difference(format_path(path), recorded, got)]


def format_path(path: tuple[PathStep, ...]) -> str:
    """`("body", "information", 0)` -> `body.information[0]`."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or "(the message)"


def _short(value: Any, limit: int = 60) -> str:
    text = value if value in (ABSENT, VOLATILE) else jsontext.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
