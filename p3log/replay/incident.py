"""An incident: the recorded connections a replay plays together, and the rules that
keep them in their recorded relation (sans-IO).

`SessionSelection` is what the command line names (`SESSION`, `--sessions ID,ID…`,
or `--since T --until T`); `read_incident` resolves it against a store into an
`Incident`: the recorded sessions ordered by when their connection opened, each
with its offset from the first one and the connections that had ended before it
opened (`after`, the happens-before the replay keeps: a reconnect follows the drop).

Offsets come from the wall clock (`recorded_at` of each session's first event), the
one clock two tap processes share; gaps inside a connection stay on its monotonic
clock (`recording.py`).

The rules both sides follow:

- `start_at`: connection k is not started before `t0 + offset_k / speed` (no wait
  with `--asap`/`--reactive`), nor before every connection of `after` has ended.
- `assign` (serve): a live connection replays the earliest recorded connection not
  yet taken whose first POS message (the login) its own first message matches; when
  none matches, the earliest not taken (it will diverge on that message, and say so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import duckdb

from p3log.projections.listing import time_bound
from p3log.replay.plan import Pacing
from p3log.replay.recording import (
    RecordedSession,
    ReplayError,
    read_sessions,
    resolve_session_id,
)
from p3log.settings import OptionError
from p3log.store.read import open_store
from p3log.wording import instant_text

__all__ = [
    "Incident",
    "IncidentConnection",
    "SessionSelection",
    "assign",
    "load_incident",
    "read_incident",
]

# The sessions a window selects: connections that carried P3 messages, not replay runs.
_WINDOW_SQL = """
SELECT session_id FROM events GROUP BY session_id
HAVING bool_or(sender IN ('client', 'server')) AND NOT bool_or(kind = 'replay_started')
   AND epoch_us(min(recorded_at)) >= ? AND epoch_us(min(recorded_at)) < ?
ORDER BY min(recorded_at), min(seq)
"""
_OPENED_SQL = """
SELECT session_id, epoch_us(min(recorded_at)), epoch_us(max(recorded_at)), min(seq)
FROM events WHERE session_id IN (SELECT unnest(?)) GROUP BY session_id
"""
_NO_BOUND = 2**62


@attrs.frozen
class SessionSelection:
    """The recorded sessions to replay: named (`sessions`, ids or unique prefixes), or
    those whose connection opened in [`since_us`, `until_us`) (UTC microseconds)."""

    sessions: tuple[str, ...] = ()
    since_us: int | None = None
    until_us: int | None = None

    @classmethod
    def from_options(
        cls,
        session: str | None = None,
        sessions: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> SessionSelection:
        """`SESSION`, `--sessions ID,ID…` or `--since`/`--until` (exactly one way);
        raises `OptionError` (one line)."""
        window = since is not None or until is not None
        ways = [name for name, given in (("SESSION", session), ("--sessions", sessions)) if given]
        ways += ["--since/--until"] if window else []
        if len(ways) > 1:
            raise OptionError(f"{' and '.join(ways)}: choose one way of selecting sessions")
        if not ways:
            raise OptionError("missing SESSION (or --sessions ID,ID…, or --since/--until)")
        if window:
            return cls(
                since_us=time_bound("--since", since),
                until_us=time_bound("--until", until, upper=True),
            )
        if session:
            return cls((session,))
        named = tuple(part.strip() for part in (sessions or "").split(","))
        if not all(named):
            raise OptionError(f"--sessions {sessions!r}: expected ID,ID,… (no empty ids)")
        return cls(named)

    @property
    def window(self) -> bool:
        return not self.sessions

    def describe(self) -> str:
        """`sessions A, B` or `opened from T before T'` (UTC) for messages."""
        if not self.window:
            return "sessions " + ", ".join(self.sessions)
        parts = ["opened"]
        if self.since_us is not None:
            parts.append(f"from {_instant(self.since_us)}")
        if self.until_us is not None:
            parts.append(f"before {_instant(self.until_us)}")
        return " ".join(parts)


def _instant(us: int) -> str:
    return instant_text(us, 6 if us % 1_000_000 else 0, zone=True)


@attrs.frozen
class IncidentConnection:
    """One recorded connection of an incident: `offset_s` after the first one opened;
    `after`: the indexes of the connections that had ended before this one opened."""

    recording: RecordedSession
    offset_s: float
    after: tuple[int, ...] = ()

    @property
    def session_id(self) -> str:
        return self.recording.session_id


@attrs.frozen
class Incident:
    """The recorded connections to replay together, in the order they opened."""

    connections: tuple[IncidentConnection, ...]

    @classmethod
    def of(cls, recording: RecordedSession) -> Incident:
        """One connection on its own."""
        return cls((IncidentConnection(recording, 0.0),))

    @property
    def session_ids(self) -> tuple[str, ...]:
        return tuple(c.session_id for c in self.connections)

    def start_at(self, index: int, t0: float, pacing: Pacing) -> float:
        """The earliest moment connection `index` may start, the first one starting
        at `t0` (the `after` connections are waited for separately)."""
        offset = self.connections[index].offset_s
        return t0 + (offset / pacing.speed if pacing.mode == "speed" else 0.0)

    def describe(self) -> str:
        """`session A` or `3 sessions: A, B, C` for banners."""
        ids = self.session_ids
        return f"session {ids[0]}" if len(ids) == 1 else f"{len(ids)} sessions: {', '.join(ids)}"


def load_incident(root: Path, selection: SessionSelection) -> Incident:
    """`read_incident` on a read-only connection of the store, closed before returning."""
    con = open_store(root)
    try:
        return read_incident(con, selection)
    finally:
        con.close()


def read_incident(con: duckdb.DuckDBPyConnection, selection: SessionSelection) -> Incident:
    """The selected sessions as an incident; `ReplayError` (one line) when an id names
    no session (or several), a session holds nothing to replay, or the window none."""
    if selection.window:
        since = selection.since_us if selection.since_us is not None else -_NO_BOUND
        until = selection.until_us if selection.until_us is not None else _NO_BOUND
        ids = [str(row[0]) for row in con.execute(_WINDOW_SQL, [since, until]).fetchall()]
        if not ids:
            raise ReplayError(f"the store has no recorded connection {selection.describe()}")
    else:
        ids = []
        for wanted in selection.sessions:
            full = resolve_session_id(con, wanted)
            if full in ids:
                raise ReplayError(f"--sessions names session {full} twice")
            ids.append(full)
    spans = {
        str(row[0]): (int(row[1]), int(row[2]), int(row[3]))
        for row in con.execute(_OPENED_SQL, [ids]).fetchall()
    }
    ids.sort(key=lambda sid: (spans[sid][0], spans[sid][2]))
    recordings = read_sessions(con, ids)
    for recording in recordings:
        if not recording.messages:
            raise ReplayError(f"session {recording.session_id} holds no P3 messages to replay")
    first_us = spans[ids[0]][0]
    connections = []
    for index, sid in enumerate(ids):
        opened_us = spans[sid][0]
        after = tuple(k for k in range(index) if spans[ids[k]][1] < opened_us)
        connections.append(
            IncidentConnection(recordings[index], (opened_us - first_us) / 1e6, after)
        )
    return Incident(tuple(connections))


def assign(
    untaken: Sequence[int], first_message: bytes | None, expects: Callable[[int, bytes], bool]
) -> int:
    """The connection (of `untaken`, in recorded order) a live connection replays: the
    first whose plan `expects` the live first message, else the first (see the module
    doc). `first_message` None: the POS closed before sending anything."""
    if first_message is not None:
        for index in untaken:
            if expects(index, first_message):
                return index
    return untaken[0]
