"""A recorded session, loaded from a store into plain data for the replayer.

`load_session(root, session_id)` reads one session's events in seq order;
`session_from_rows` builds the same from rows (the tests' way in). The P3 messages
(and malformed bytes) become `RecordedMessage`s; of the lifecycle events only what a
replay needs is kept: when the connection opened (the anchor for server messages
sent before the POS said anything), the transport, and how it closed.

Times are the events' `mono_ns`: a monotonic clock, right for gaps within a session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import duckdb

from p3log.replay.normalise import decode_object
from p3log.store import lifecycle
from p3log.store.lifecycle import ConnectionClosed, ConnectionOpened
from p3log.store.read import open_store

__all__ = [
    "RecordedClose",
    "RecordedMessage",
    "RecordedSession",
    "ReplayError",
    "load_session",
    "read_session",
    "read_sessions",
    "resolve_session_id",
    "session_from_rows",
]

Peer = Literal["client", "server"]

_SESSION_SQL = """
SELECT seq, sender, kind, msg_type, tag, resource, mono_ns, payload, raw
FROM events WHERE session_id = ? ORDER BY seq
"""
_SESSIONS_SQL = """
SELECT session_id, seq, sender, kind, msg_type, tag, resource, mono_ns, payload, raw
FROM events WHERE session_id IN (SELECT unnest(?)) ORDER BY seq
"""


class ReplayError(Exception):
    """A replay cannot start (no such session, nothing to replay); one plain line."""


@attrs.frozen
class RecordedMessage:
    """One message (or malformed bytes) of the recording, as a peer sent it.

    `payload` is the decoded JSON object (numbers as `Decimal`), None for bytes that
    were not one; `raw` is the bytes as recorded (after redaction).
    """

    seq: int
    sender: Peer
    kind: str  # "message" or "malformed"
    msg_type: str | None
    tag: str | None
    resource: str | None
    at_ns: int
    # Left out of equality (and hashing: a dict has no hash); `raw` says the same.
    payload: dict[str, Any] | None = attrs.field(eq=False, hash=False)
    raw: bytes = attrs.field(repr=False)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def describe(self) -> str:
        """`EXECUTE_TRANSACTION_REQUEST (seq 5)`, or `malformed bytes (seq 5)`."""
        return f"{self.msg_type or 'malformed bytes'} (seq {self.seq})"


@attrs.frozen
class RecordedClose:
    """How the recorded connection ended: who closed it, with what code and reason."""

    by: str | None
    code: int | None
    reason: str
    at_ns: int


@attrs.frozen
class RecordedSession:
    """One recorded P3 connection, ready to be replayed."""

    session_id: str
    messages: tuple[RecordedMessage, ...]
    opened_ns: int | None = None
    transport: str | None = None
    close: RecordedClose | None = None

    @property
    def pos_messages(self) -> tuple[RecordedMessage, ...]:
        return tuple(m for m in self.messages if m.sender == "client")

    @property
    def server_messages(self) -> tuple[RecordedMessage, ...]:
        return tuple(m for m in self.messages if m.sender == "server")


def load_session(root: Path, session_id: str) -> RecordedSession:
    """The session `session_id` (or the one session whose id starts with it) of a store.

    Raises `ReplayError` when there is no such session or it holds no messages, and
    the store's own errors (`StoreError`) for a missing or busy store. The read-only
    connection is closed before returning, so the caller may then open the writer.
    """
    con = open_store(root)
    try:
        return read_session(con, session_id)
    finally:
        con.close()


def read_session(con: duckdb.DuckDBPyConnection, session_id: str) -> RecordedSession:
    """`load_session` on a connection that is open already (a reader's or the writer's
    own `EventLog.index`, which holds the `events` view too)."""
    full_id = resolve_session_id(con, session_id)
    session = session_from_rows(full_id, con.execute(_SESSION_SQL, [full_id]).fetchall())
    if not session.messages:
        raise ReplayError(f"session {full_id} holds no P3 messages to replay")
    return session


def read_sessions(
    con: duckdb.DuckDBPyConnection, session_ids: Sequence[str]
) -> list[RecordedSession]:
    """The sessions of these full ids, in this order, in one pass over the events (a
    session holding no message reads as one with no messages)."""
    rows: dict[str, list[Sequence[Any]]] = {session_id: [] for session_id in session_ids}
    for row in con.execute(_SESSIONS_SQL, [list(session_ids)]).fetchall():
        rows[str(row[0])].append(row[1:])
    return [session_from_rows(session_id, rows[session_id]) for session_id in session_ids]


def resolve_session_id(con: duckdb.DuckDBPyConnection, wanted: str) -> str:
    """The full id of the session `wanted` names exactly or as a unique prefix."""
    found = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT session_id FROM events WHERE starts_with(session_id, ?) "
            "ORDER BY session_id LIMIT 11",
            [wanted],
        ).fetchall()
    ]
    if wanted in found:
        return wanted
    if len(found) == 1:
        return str(found[0])
    if found:
        listed = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
        raise ReplayError(f"session {wanted!r} is ambiguous: it starts {listed}")
    some = [
        row[0]
        for row in con.execute(
            "SELECT session_id FROM events GROUP BY session_id ORDER BY min(seq) LIMIT 5"
        ).fetchall()
    ]
    hint = f" (it has: {', '.join(some)}{', ...' if len(some) == 5 else ''})" if some else ""
    raise ReplayError(f"the store has no session {wanted!r}{hint}")


def session_from_rows(session_id: str, rows: Iterable[Sequence[Any]]) -> RecordedSession:
    """Build a session from `events` rows: (seq, sender, kind, msg_type, tag, resource,
    mono_ns, payload, raw), in seq order."""
    messages: list[RecordedMessage] = []
    opened_ns: int | None = None
    transport: str | None = None
    close: RecordedClose | None = None
    for seq, sender, kind, msg_type, tag, resource, mono_ns, payload, raw in rows:
        if sender in ("client", "server"):
            data = bytes(raw) if raw is not None else (payload or "").encode()
            messages.append(
                RecordedMessage(
                    seq=int(seq),
                    sender=sender,
                    kind=str(kind),
                    msg_type=msg_type,
                    tag=tag,
                    resource=resource,
                    at_ns=int(mono_ns),
                    payload=decode_object(payload.encode()) if payload is not None else None,
                    raw=data,
                )
            )
            continue
        event = lifecycle.read(str(kind), payload)
        if isinstance(event, ConnectionOpened) and opened_ns is None:
            opened_ns = int(mono_ns)
            transport = event.transport
        elif isinstance(event, ConnectionClosed) and close is None:
            close = RecordedClose(event.by, event.code, event.reason or "", int(mono_ns))
    return RecordedSession(session_id, tuple(messages), opened_ns, transport, close)
