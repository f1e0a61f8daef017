"""Every lifecycle event kind as a frozen record: what p3log itself observed.

A lifecycle event (`sender` "tap") is not a P3 message: the tap, the POS recorder,
a replay or the store's governance wrote it. Each kind is one class here, with its
fields; producers record instances (`EventLog.record_lifecycle(session, record)`)
and consumers read them back with `read(kind, payload)`, both through the one
converter of this module. One place says what a kind carries.

The payload JSON is the record's fields under their names (`from` for `sender`),
so stores written before these classes read the same. Reading is lenient, since a
store can be old or hostile: a field whose value has the wrong type reads as None
and the value is kept in `extra` with every key this version does not know, and a
kind this version does not know reads as `Unknown` with all its details. Written
back, a record gives the same JSON object (nothing is dropped).

Optional fields (`_optional`) are left out of the JSON when None: a field only one
producer has (the WebSocket path of a `connection_opened`); the others are always
written, null included (`connection_closed`'s code when the link broke without one).

Records go into the store as JSON bytes, through the store's one door
(`store.capture`), which redacts them as it redacts every payload.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, ClassVar, Final, get_args

import attrs
import cattrs

from p3log.protocol import jsontext

__all__ = [
    "SESSION_END_KINDS",
    "ConnectionClosed",
    "ConnectionOpened",
    "ForwardFailed",
    "FrameTooLarge",
    "HandshakeTimeout",
    "Lifecycle",
    "RecordingGap",
    "RedactionConfigured",
    "ReplayDivergence",
    "ReplayFinished",
    "ReplayStarted",
    "ReplaySummary",
    "Unknown",
    "UpstreamConnected",
    "UpstreamFailed",
    "read",
    "structure",
    "to_json",
    "to_plain",
]

_OMIT: Final = "omit_if_none"
_KEY: Final = "json_key"


def _optional() -> Any:
    return attrs.field(default=None, metadata={_OMIT: True})


@attrs.frozen(kw_only=True)
class Lifecycle:
    """A lifecycle event's details. `extra`: what this version does not read, kept."""

    KIND: ClassVar[str] = ""
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def kind(self) -> str:
        return self.KIND


@attrs.frozen(kw_only=True)
class ConnectionOpened(Lifecycle):
    """A connection began: a POS reached the tap, or a recorder (`p3log pos --record`,
    a replay) opened its link (`recorded_by` says which side it recorded from)."""

    KIND: ClassVar[str] = "connection_opened"
    transport: str | None = _optional()  # "ws" or "tcp"
    peer: str | None = _optional()
    path: str | None = _optional()  # WebSocket only
    subprotocols: tuple[str, ...] | None = _optional()  # WebSocket only
    headers: tuple[tuple[str, str], ...] | None = _optional()  # WebSocket handshake
    recorded_by: str | None = _optional()  # "client" or "server", for a recorder


@attrs.frozen(kw_only=True)
class ConnectionClosed(Lifecycle):
    """A connection ended: who closed it, the WebSocket close code (None when the link
    broke without one), the reason."""

    KIND: ClassVar[str] = "connection_closed"
    peer: str | None = _optional()  # a recorder's
    by: str | None = None
    code: int | None = None
    reason: str | None = None


@attrs.frozen(kw_only=True)
class UpstreamConnected(Lifecycle):
    KIND: ClassVar[str] = "upstream_connected"
    url: str | None = None
    subprotocol: str | None = _optional()  # the WebSocket subprotocol agreed


@attrs.frozen(kw_only=True)
class UpstreamFailed(Lifecycle):
    KIND: ClassVar[str] = "upstream_failed"
    url: str | None = None
    error: str | None = None


@attrs.frozen(kw_only=True)
class HandshakeTimeout(Lifecycle):
    """A POS connected but did not finish the WebSocket handshake (or send a first
    frame, on TCP) within `seconds`."""

    KIND: ClassVar[str] = "handshake_timeout"
    transport: str | None = None
    peer: str | None = _optional()
    seconds: float | None = None
    reason: str | None = None


@attrs.frozen(kw_only=True)
class FrameTooLarge(Lifecycle):
    KIND: ClassVar[str] = "frame_too_large"
    sender: str | None = attrs.field(default=None, metadata={_KEY: "from"})
    reason: str | None = None


@attrs.frozen(kw_only=True)
class ForwardFailed(Lifecycle):
    """A recorded message did not reach the other side, which had closed."""

    KIND: ClassVar[str] = "forward_failed"
    sender: str | None = attrs.field(default=None, metadata={_KEY: "from"})
    code: int | None = None
    reason: str | None = None


@attrs.frozen(kw_only=True)
class RecordingGap(Lifecycle):
    """Messages forwarded but not recorded while the journal could not be written."""

    KIND: ClassVar[str] = "recording_gap"
    since_us: int | None = None
    error: str | None = None
    missed: dict[str, int] | None = None  # by sender


@attrs.frozen(kw_only=True)
class ReplayStarted(Lifecycle):
    KIND: ClassVar[str] = "replay_started"
    replay_of: str | None = None
    mode: str | None = None  # "serve" or "drive"
    speed: float | None = None  # None unless pacing is "speed"
    pacing: str | None = None
    target: str | None = _optional()  # drive
    on_unexpected: str | None = None
    timeout: float | None = _optional()  # drive
    fresh_ids: bool | None = _optional()  # serve
    volatile_paths: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class ReplayFinished(Lifecycle):
    KIND: ClassVar[str] = "replay_finished"
    outcome: str | None = None
    divergences: int | None = None
    pos_matched: int | None = _optional()  # serve
    pos_sent: int | None = _optional()  # drive
    pos_recorded: int | None = _optional()
    server_sent: int | None = _optional()  # serve
    server_matched: int | None = _optional()  # drive
    server_recorded: int | None = _optional()


@attrs.frozen(kw_only=True)
class ReplayDivergence(Lifecycle):
    """Where a replay left the recording (`replay.divergence` builds the parts)."""

    KIND: ClassVar[str] = "replay_divergence"
    rule: str | None = None
    peer: str | None = None
    action: str | None = None
    summary: str | None = None
    arrived: Any = None  # a JSON object, exact numbers kept
    expected: tuple[Any, ...] | None = None


@attrs.frozen(kw_only=True)
class ReplaySummary(Lifecycle):
    """A multi-connection replay's verdict (`replay.results.IncidentResult`): each
    connection's outcome and timing, throughput, per-step latency p50/p95/p99 as
    recorded and as replayed."""

    KIND: ClassVar[str] = "replay_summary"
    mode: str | None = None
    replay_of: tuple[str, ...] | None = None
    connections: tuple[Any, ...] | None = None
    seconds: float | None = None
    messages: int | None = None
    messages_per_s: float | None = None
    latencies: tuple[Any, ...] | None = None


@attrs.frozen(kw_only=True)
class RedactionConfigured(Lifecycle):
    """The store's redaction policy and fingerprint key id, under the chain."""

    KIND: ClassVar[str] = "redaction_configured"
    store: str | None = None
    redaction_policy: str | None = None
    key_id: str | None = None
    reason: str | None = None


@attrs.frozen(kw_only=True)
class Unknown(Lifecycle):
    """A kind this version does not know: every detail is in `extra`."""

    name: str = ""

    @property
    def kind(self) -> str:
        return self.name


_RECORDS: Final[tuple[type[Lifecycle], ...]] = (
    ConnectionOpened,
    ConnectionClosed,
    UpstreamConnected,
    UpstreamFailed,
    HandshakeTimeout,
    FrameTooLarge,
    ForwardFailed,
    RecordingGap,
    ReplayStarted,
    ReplayFinished,
    ReplayDivergence,
    ReplaySummary,
    RedactionConfigured,
)
_BY_KIND: Final = {record.KIND: record for record in _RECORDS}
for _record in (*_RECORDS, Unknown):
    attrs.resolve_types(_record)  # field types as types, not strings

#: The kinds after which a session says nothing more (the door forgets its secrets).
SESSION_END_KINDS: Final = frozenset(
    {ConnectionClosed.KIND, UpstreamFailed.KIND, ReplayFinished.KIND, ReplaySummary.KIND}
)


# --- the one converter ----------------------------------------------------------------


def _exact(value: Any, kind: type[Any]) -> Any:
    # bool is an int to Python, not to a reader of the JSON
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _number(value: Any, _: type[Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value  # an int stays an int: written back as it was read


def _text_key_dict(value: Any, kind: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    _, item = get_args(kind)
    return {_exact(key, str): _CONVERTER.structure(v, item) for key, v in value.items()}


def _sequence(value: Any, kind: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    args = get_args(kind)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_CONVERTER.structure(item, args[0]) for item in value)
    if len(args) != len(value):
        raise ValueError(f"expected {len(args)} items, got {len(value)}")
    return tuple(_CONVERTER.structure(item, arg) for item, arg in zip(value, args, strict=True))


def _is_tuple(kind: Any) -> bool:
    return getattr(kind, "__origin__", None) is tuple


def _is_dict(kind: Any) -> bool:
    return getattr(kind, "__origin__", None) is dict


def _float_text(value: float) -> Decimal:
    # jsontext writes exact numbers only; a float's repr is its shortest exact text
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a JSON number")
    return Decimal(repr(value))


_CONVERTER: Final = cattrs.Converter()
for _kind in (str, int, bool):
    _CONVERTER.register_structure_hook(_kind, _exact)
_CONVERTER.register_structure_hook(float, _number)
_CONVERTER.register_structure_hook_func(_is_tuple, _sequence)
_CONVERTER.register_structure_hook_func(_is_dict, _text_key_dict)
_CONVERTER.register_unstructure_hook(float, _float_text)


def _key(field: attrs.Attribute[Any]) -> str:
    return str(field.metadata.get(_KEY, field.name))


def _fields(record: type[Lifecycle]) -> tuple[attrs.Attribute[Any], ...]:
    return tuple(f for f in attrs.fields(record) if f.name not in ("extra", "name"))


def to_plain(record: Lifecycle) -> dict[str, Any]:
    """The record as its payload's JSON object (floats as exact Decimals)."""
    out: dict[str, Any] = {}
    for field in _fields(type(record)):
        value, key = getattr(record, field.name), _key(field)
        if value is None and (field.metadata.get(_OMIT) or key in record.extra):
            continue  # left out, or the value read from the store that it could not hold
        out[key] = _CONVERTER.unstructure(value)
    for key, value in record.extra.items():
        out.setdefault(key, _exact_numbers(value))
    return out


def to_json(record: Lifecycle) -> bytes:
    """The payload the store's door receives for `record`."""
    return jsontext.dumps(to_plain(record)).encode()


def _exact_numbers(value: Any) -> Any:
    """JSON data read back (`extra`), floats as the exact text they were read from."""
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dict):
        return {key: _exact_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_exact_numbers(item) for item in value]
    return value


def structure(kind: str, details: object) -> Lifecycle:
    """The record for `kind` from its details (a JSON object; anything else reads as a
    record with no fields)."""
    fields: dict[str, Any] = details if isinstance(details, dict) else {}
    record = _BY_KIND.get(kind)
    if record is None:
        return Unknown(name=kind, extra=dict(fields))
    values: dict[str, Any] = {}
    extra = dict(fields)
    for field in _fields(record):
        key = _key(field)
        if key not in fields:
            continue
        value = fields[key]
        if value is None and field.metadata.get(_OMIT):
            continue  # kept in extra: written back as it was, null and all
        as_type: Any = field.type  # resolved when the module loads
        try:
            values[field.name] = None if value is None else _CONVERTER.structure(value, as_type)
        except (TypeError, ValueError, cattrs.BaseValidationError):
            continue  # the wrong type: kept in extra, the field reads as None
        del extra[key]
    return record(**values, extra=extra)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read(kind: str, payload: str | bytes | None) -> Lifecycle:
    """The record of a lifecycle event as the store holds it (its `payload` JSON)."""
    try:  # NaN and Infinity are not JSON: such a payload reads as no details
        details = json.loads(payload, parse_constant=_not_json) if payload else {}
    except (ValueError, RecursionError):
        details = {}
    return structure(kind, details)
