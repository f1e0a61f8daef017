"""One event as one line of JSON: the journal's record and the JSONL export format.

The journal and `p3log export --format jsonl` share this codec, so an export can be
imported anywhere and a journal segment can be read by any JSON tool (or by DuckDB's
`read_json`, which is how `verify` checks a million records quickly).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import orjson

from p3log.store.event import (
    INT64,
    SENDERS,
    WIRE_KINDS,
    Event,
    EventBody,
    Stamp,
    redactions_joinable,
)

# Key order of a record line, and DuckDB's types for reading them back.
RECORD_COLUMNS: dict[str, str] = {
    "seq": "BIGINT",
    "session_id": "VARCHAR",
    "sender": "VARCHAR",
    "kind": "VARCHAR",
    "msg_type": "VARCHAR",
    "tag": "VARCHAR",
    "resource": "VARCHAR",
    "status": "VARCHAR",
    "recorded_at_us": "BIGINT",
    "mono_ns": "BIGINT",
    "payload": "VARCHAR",
    "raw_b64": "VARCHAR",
    "parse_note": "VARCHAR",
    "redaction_policy": "VARCHAR",
    "redactions": "VARCHAR[]",
    "prev_hash": "VARCHAR",
    "hash": "VARCHAR",
}


class RecordError(ValueError):
    """A record line that does not describe an event."""


def encode_record(event: Event) -> bytes:
    """The record line, newline included: the canonical serialisation of an event."""
    return record_line(event.seq, body_fields(event.body), event.prev_hash, event.hash)


def body_fields(body: EventBody) -> bytes:
    """The record line's fields between `seq` and `prev_hash`: what a body contributes
    to its line wherever in the chain it is sealed (a bulk import renders it before
    the seq is known)."""
    return _render_fields(
        {
            "session_id": body.session_id,
            "sender": body.sender,
            "kind": body.kind,
            "msg_type": body.msg_type,
            "tag": body.tag,
            "resource": body.resource,
            "status": body.status,
            "recorded_at_us": body.stamp.recorded_at_us,
            "mono_ns": body.stamp.mono_ns,
            "payload": body.payload,
            "raw_b64": (
                base64.b64encode(body.raw).decode("ascii") if body.raw is not None else None
            ),
            "parse_note": body.parse_note,
            "redaction_policy": body.redaction_policy,
            "redactions": list(body.redactions),
        }
    )


def record_line(seq: int, fields: bytes, prev_hash: str, hash: str) -> bytes:
    """THE canonical serialisation: compact JSON, UTF-8 unescaped, keys in
    RECORD_COLUMNS order, a newline at the end (orjson's only spelling of a value),
    from the body's `fields` (`body_fields`) and the chain's three."""
    return b'{"seq":%d,%b,"prev_hash":%b,"hash":%b}\n' % (
        seq,
        fields,
        orjson.dumps(prev_hash),
        orjson.dumps(hash),
    )


def _render_fields(fields: dict[str, Any]) -> bytes:
    """Fields as they stand inside a compact JSON object (orjson's spelling)."""
    return orjson.dumps(fields)[1:-1]


# What each record key may hold in a canonical line (JSON null is None), and every
# combination of them, so that a line's value types are checked in one lookup.
_REQUIRED_TEXT = frozenset(
    {"session_id", "sender", "kind", "redaction_policy", "prev_hash", "hash"}
)
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    name: {"BIGINT": (int,), "VARCHAR[]": (list,)}.get(
        kind, (str,) if name in _REQUIRED_TEXT else (str, type(None))
    )
    for name, kind in RECORD_COLUMNS.items()
}
_CANONICAL_TYPES = frozenset(itertools.product(*_KEY_TYPES.values()))
_RECORD_KEYS = tuple(RECORD_COLUMNS)
_NOT_A_RULE = "a redaction must be a rule's name: not empty, no comma"
_INTEGER_KEYS = tuple(name for name, kind in RECORD_COLUMNS.items() if kind == "BIGINT")


def decode_canonical(line: bytes) -> dict[str, Any]:
    """Parse a record line that must be exactly what `encode_record` writes.

    A line that is not (a duplicate or extra key, keys out of order, a value of
    another type, another spelling of the same JSON such as a needless escape,
    spaces or `1.0`) could be read differently by different JSON readers, so it
    is refused: a line accepted here has exactly one reading.
    """
    obj = decode_line(line)
    if tuple(obj) != _RECORD_KEYS:
        raise RecordError("its keys are not a record's, once each, in order")
    if tuple(map(type, obj.values())) not in _CANONICAL_TYPES:  # exact: no bool for int
        wrong = next(k for k, v in obj.items() if type(v) not in _KEY_TYPES[k])
        raise RecordError(f"{wrong} must not be {_json_type(obj[wrong])}")
    if not all(type(item) is str for item in obj["redactions"]):
        raise RecordError("redactions must be a list of strings")
    if not redactions_joinable(obj["redactions"]):
        raise RecordError(_NOT_A_RULE)
    if not all(obj[key] in INT64 for key in _INTEGER_KEYS):
        raise RecordError("an integer beyond 64 bits")
    raw_b64 = obj["raw_b64"]
    if raw_b64 is not None and _canonical_base64(raw_b64) != raw_b64:
        raise RecordError("raw_b64 is not base64 as p3log writes it")
    try:
        # `record_line` of these keys in this order is orjson's compact spelling of the
        # whole object: one dumps, as verify checks millions of lines.
        rendered = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate escape
        raise RecordError(f"not a record p3log can write: {exc}") from exc
    if rendered != line:
        raise RecordError("not spelled as p3log writes a record (spacing, escapes or numbers)")
    return obj


def _canonical_base64(text: str) -> str | None:
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode("ascii")
    except ValueError:  # binascii.Error, or a character that is not ASCII
        return None


def decode_line(line: bytes | str) -> dict[str, Any]:
    """Parse one record line into its JSON object (not yet validated)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"not a JSON record: {exc}") from exc
    if not isinstance(obj, dict):
        raise RecordError("a record must be a JSON object")
    return obj


def decode_body(obj: dict[str, Any]) -> EventBody:
    """Validate the content fields of a record; chain fields are not looked at."""
    session_id = _text(obj, "session_id")
    sender = _text(obj, "sender")
    kind = _text(obj, "kind")
    if sender not in SENDERS:
        raise RecordError(f"sender must be one of {sorted(SENDERS)}, got {sender!r}")
    if (kind in WIRE_KINDS) == (sender == "tap"):
        raise RecordError(f"kind {kind!r} does not go with sender {sender!r}")
    raw_b64 = _optional_text(obj, "raw_b64")
    try:
        raw = base64.b64decode(raw_b64, validate=True) if raw_b64 is not None else None
    except ValueError as exc:  # binascii.Error, or a character that is not ASCII
        raise RecordError(f"raw_b64 is not base64: {exc}") from exc
    redactions = obj.get("redactions", [])
    if not isinstance(redactions, list) or not all(isinstance(r, str) for r in redactions):
        raise RecordError("redactions must be a list of strings")
    if not redactions_joinable(redactions):
        raise RecordError(_NOT_A_RULE)
    return EventBody(
        session_id=session_id,
        sender=sender,  # type: ignore[arg-type]  # checked against SENDERS above
        kind=kind,
        msg_type=_optional_text(obj, "msg_type"),
        tag=_optional_text(obj, "tag"),
        resource=_optional_text(obj, "resource"),
        status=_optional_text(obj, "status"),
        stamp=Stamp(
            recorded_at_us=_integer(obj, "recorded_at_us"), mono_ns=_integer(obj, "mono_ns")
        ),
        payload=_optional_text(obj, "payload"),
        raw=raw,
        parse_note=_optional_text(obj, "parse_note"),
        redaction_policy=_optional_text(obj, "redaction_policy") or "",
        redactions=tuple(redactions),
    )


def decode_event(obj: dict[str, Any]) -> Event:
    """Validate a full record, chain fields included."""
    return Event(
        seq=_integer(obj, "seq"),
        body=decode_body(obj),
        prev_hash=_text(obj, "prev_hash"),
        hash=_text(obj, "hash"),
    )


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RecordError(f"{key} must be a string, got {_json_type(value)}")
    return value


def _optional_text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{key} must be a string or null, got {_json_type(value)}")
    return value


def _integer(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"{key} must be an integer, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    names = {type(None): "null", bool: "boolean", str: "string", list: "array", dict: "object"}
    return names.get(type(value), "number")
