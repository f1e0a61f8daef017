"""The event record and its place in the hash chain.

An event is everything p3log knows about one thing that happened on a P3 link: a
message (or bytes that failed to be one) that a peer sent, or a lifecycle fact the
tap observed. Events are immutable; each one commits to its predecessor through
`prev_hash`, so changing, deleting, inserting or reordering any of them breaks the
chain from that point on.

The canonical form that is hashed is defined once, as `CANONICAL_FIELDS`, and
rendered both here (when sealing) and as SQL in `verify.py` (when checking a
million events inside DuckDB), so the two can never disagree.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import attrs

Sender = Literal["client", "server", "tap"]
SENDERS: frozenset[str] = frozenset(get_args(Sender))

# `kind` of an event: a P3 message, bytes that did not parse as one, or (sender
# "tap") a lifecycle kind such as "connection_opened".
MESSAGE = "message"
MALFORMED = "malformed"
WIRE_KINDS = frozenset({MESSAGE, MALFORMED})

GENESIS_HASH = "0" * 64


@attrs.frozen
class Stamp:
    """When an event was observed: wall clock for people, monotonic for durations."""

    recorded_at_us: int  # UTC, microseconds since the Unix epoch
    mono_ns: int

    @classmethod
    def now(cls) -> Stamp:
        return cls(recorded_at_us=time.time_ns() // 1000, mono_ns=time.monotonic_ns())


@attrs.frozen
class EventBody:
    """An event's content before the store gives it a place in the chain."""

    session_id: str
    sender: Sender
    kind: str
    msg_type: str | None
    tag: str | None
    resource: str | None
    status: str | None
    stamp: Stamp
    # The message as JSON text (for a strictly valid message: exactly the bytes that
    # arrived, after redaction), or None when the bytes were not JSON.
    payload: str | None
    # The bytes as they arrived (after redaction), kept only where they differ from
    # `payload` encoded as UTF-8, so the common case is not stored twice.
    raw: bytes | None
    parse_note: str | None
    redaction_policy: str
    redactions: tuple[str, ...]

    @property
    def wire_bytes(self) -> bytes | None:
        """The bytes a peer sent (after redaction); None for the tap's own events."""
        if self.sender == "tap":
            return None
        if self.raw is not None:
            return self.raw
        return self.payload.encode() if self.payload is not None else None


@attrs.frozen
class Event:
    """An event with its place in the chain: `seq` is global and gapless."""

    seq: int
    body: EventBody
    prev_hash: str
    hash: str

    @property
    def wire_bytes(self) -> bytes | None:
        return self.body.wire_bytes


def seal(body: EventBody, seq: int, prev_hash: str) -> Event:
    """Give `body` its place after `prev_hash` in the chain."""
    return Event(
        seq=seq, body=body, prev_hash=prev_hash, hash=link(prev_hash, seq, body_canonical(body))
    )


def link(prev_hash: str, seq: int, canonical_body: bytes) -> str:
    """The hash of the event at `seq` after `prev_hash` whose body's canonical form is
    `canonical_body` (`body_canonical`): the chain's one sequential step."""
    return hashlib.sha256(
        prev_hash.encode("ascii") + _canonical_text(str(seq)) + canonical_body
    ).hexdigest()


# The hashed fields, in order. Each name is a column of the normalized relation
# that `verify.py` checks; each renders as text here and in SQL alike.
CANONICAL_FIELDS: tuple[str, ...] = (
    "seq",
    "session_id",
    "sender",
    "kind",
    "msg_type",
    "tag",
    "resource",
    "status",
    "recorded_at_us",
    "mono_ns",
    "payload",
    "raw_b64",
    "parse_note",
    "redaction_policy",
    "redactions",
)


def _body_texts(body: EventBody) -> tuple[str | None, ...]:
    """The values of CANONICAL_FIELDS after `seq`, as text (None stays None)."""
    return (
        body.session_id,
        body.sender,
        body.kind,
        body.msg_type,
        body.tag,
        body.resource,
        body.status,
        str(body.stamp.recorded_at_us),
        str(body.stamp.mono_ns),
        body.payload,
        base64.b64encode(body.raw).decode("ascii") if body.raw is not None else None,
        body.parse_note,
        body.redaction_policy,
        REDACTION_SEPARATOR.join(body.redactions),
    )


# The canonical form joins `redactions` with commas, so it has one reading only if no
# item is empty or holds a comma (a rule's name never does: [] and [""] would share a
# hash). Integers are 64-bit signed, as the index's BIGINT columns hold them.
REDACTION_SEPARATOR = ","
INT64 = range(-(2**63), 2**63)


def redactions_joinable(redactions: Iterable[str]) -> bool:
    return all(item and REDACTION_SEPARATOR not in item for item in redactions)


def canonical_bytes(seq: int, body: EventBody) -> bytes:
    """Each field as `<utf-8 length>:<text>;`, or `-;` for None: unambiguous, and
    computable by DuckDB's `strlen` and `||` without leaving SQL (chain.py)."""
    return _canonical_text(str(seq)) + body_canonical(body)


def body_canonical(body: EventBody) -> bytes:
    """`canonical_bytes` without its first field, the seq: what a body contributes to
    its hash wherever in the chain it is sealed (a bulk import computes it before the
    seq is known)."""
    return render_canonical(_body_texts(body))


def record_canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """`canonical_bytes` of a decoded record line (its keys are the canonical fields):
    integers in decimal, `redactions` joined with commas, text as it is."""
    return render_canonical(
        [
            value
            if value is None or type(value) is str
            else REDACTION_SEPARATOR.join(value)
            if type(value) is list
            else str(value)
            for value in map(record.__getitem__, CANONICAL_FIELDS)
        ]
    )


def render_canonical(texts: Iterable[str | None]) -> bytes:
    """Fields rendered one after the other, each as `_canonical_text` renders it (built
    as one text and encoded once: verify and import render millions of these)."""
    return "".join(
        [
            "-;"
            if text is None
            else f"{len(text) if text.isascii() else len(text.encode())}:{text};"
            for text in texts
        ]
    ).encode()


def _canonical_text(text: str | None) -> bytes:
    if text is None:
        return b"-;"
    if text.isascii():  # O(1) in CPython: one encode, no second pass for the length
        return f"{len(text)}:{text};".encode("ascii")
    encoded = text.encode()
    return b"%d:%b;" % (len(encoded), encoded)
