"""An import's redaction and rendering over worker processes; the chain stays in order.

Redacting and rendering an imported event costs tens of µs of Python; linking it into
the chain (seq, prev_hash, SHA-256) about one. So a large import forks workers after
the store is open (each inherits the writer's door and key): each redacts and renders
the events of its own sessions (`EventLog.render_imported`), in file order, and the
writer links every event in file order (`Batch.append_rendered`).

The journal is byte for byte what one process would write, because everything the
door remembers is per session (the secrets seen in a session, dropped when it ends)
and a session is redacted by one process only, in order:

- sessions go to workers by first appearance, round robin; the store's own session
  (`GOVERNANCE_SESSION`, whose memory the writer's configuration event is redacted
  with) stays with the writer;
- the door's memory is bounded (`SessionSecrets.SESSIONS`) and drops the least
  recently active session first, an order over all sessions. Where the file can
  hold more sessions open at once than that bound, the import runs in one process;
- the configuration event goes before the first event whose redaction used the key,
  which a worker says of each event;
- a worker that fails says why at the event it failed on, so the import stops at the
  first bad event, as in one process.

A worker writes only to its pipe: if the writer is killed, its next write fails and
it ends; nothing it did is in the store.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final

from p3log.store.capture import SessionSecrets
from p3log.store.errors import StoreError
from p3log.store.event import EventBody
from p3log.store.governance import GOVERNANCE_SESSION
from p3log.store.lifecycle import SESSION_END_KINDS
from p3log.store.log import Batch, EventLog, Rendered
from p3log.store.records import decode_body, decode_line

# Below this many events, forking workers costs more than it saves.
PARALLEL_MIN_EVENTS: Final = 20_000
MAX_WORKERS: Final = 4
# Rendered events per message on a worker's pipe (about 2.5 MB of ~1 KB events).
_PIPE_BATCH: Final = 1024
# What a line of the file is for: not an event (blank, the export's header or end
# line), an event the writer redacts itself, or (0, 1, ...) a worker's.
SKIP: Final = 255
WRITER: Final = 254


class ImportPlan:
    """Which process redacts each line of a file, learnt while the file is checked."""

    def __init__(self, workers: int | None = None) -> None:
        """`workers`: how many worker processes (0: none); None: as many as there are
        cores (up to MAX_WORKERS), if the file is large enough to pay for them."""
        self._asked = workers
        self.owners = bytearray()  # per line of the file
        self.events = 0
        self._sessions: dict[str, int] = {}
        self._open: set[str] = set()  # sessions begun and not ended
        self._most_open = 0

    def add(self, number: int, body: EventBody) -> None:
        """Line `number` (from 1) holds `body`; lines skipped before it are no events."""
        self.owners.extend(bytes([SKIP]) * (number - 1 - len(self.owners)))
        session = body.session_id
        owner = self._sessions.get(session)
        if owner is None:
            owner = WRITER if session == GOVERNANCE_SESSION else len(self._sessions)
            self._sessions[session] = owner
        self.owners.append(owner if owner == WRITER else owner % MAX_WORKERS)
        if body.kind in SESSION_END_KINDS:
            self._open.discard(session)
        else:
            self._open.add(session)
            self._most_open = max(self._most_open, len(self._open))
        self.events += 1

    @property
    def workers(self) -> int:
        # More sessions open at once than the door remembers: its eviction order spans
        # sessions, so one process must see them all.
        if self._most_open >= SessionSecrets.SESSIONS:
            return 0
        if self._asked is not None:
            return min(self._asked, MAX_WORKERS)
        cores = len(os.sched_getaffinity(0))
        if self.events < PARALLEL_MIN_EVENTS or cores < 2:
            return 0
        return min(cores, MAX_WORKERS)


def append_in_parallel(log: EventLog, batch: Batch, source: Path, plan: ImportPlan) -> None:
    """Append every event of `source` (checked: `plan` was made from it) to `batch`."""
    workers = plan.workers
    owners = _fold(plan.owners, workers)
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]
    processes = [
        context.Process(target=_work, args=(log, source, owners, number, pipes), daemon=True)
        for number in range(workers)
    ]
    streams = [_results(receive) for receive, _ in pipes]
    try:
        for process in processes:
            process.start()
        for _, send in pipes:  # each worker's end is its own: its exit is our EOF
            send.close()
        with source.open("rb") as lines:
            for owner, line in zip(owners, lines, strict=False):
                if owner == SKIP:
                    continue
                if owner == WRITER:
                    batch.append(log.imported_body(decode_body(decode_line(line))))
                    continue
                rendered = next(streams[owner])
                if isinstance(rendered, str):
                    raise StoreError(rendered)
                batch.append_rendered(rendered)
    finally:
        for process in processes:
            process.kill()
            process.join()


def _fold(owners: bytearray, workers: int) -> bytes:
    """`owners` with MAX_WORKERS workers' sessions dealt to `workers`."""
    table = bytes(n % workers if n < MAX_WORKERS else n for n in range(256))
    return bytes(owners.translate(table))


def _results(receive: Connection) -> Iterator[Rendered | str]:
    try:
        while True:
            yield from receive.recv()
    except EOFError:
        raise StoreError("an import worker stopped before its last event") from None
    finally:
        receive.close()


def _work(
    log: EventLog, source: Path, owners: bytes, number: int, pipes: list[tuple[Connection, ...]]
) -> None:
    """In a worker: redact and render the lines that are `number`'s, in order."""
    # Only the writer reads: once it is gone, a send fails and the worker ends.
    send = pipes[number][1]
    for receive, other in pipes:
        receive.close()
        if other is not send:
            other.close()
    try:
        _render(log, source, owners, number, send)
    except BrokenPipeError:
        pass  # the writer is gone (killed): nothing of this import is in the store
    finally:
        send.close()


def _render(log: EventLog, source: Path, owners: bytes, number: int, send: Connection) -> None:
    out: list[Rendered | str] = []
    try:
        with source.open("rb") as lines:
            for owner, line in zip(owners, lines, strict=False):
                if owner == number:
                    out.append(log.render_imported(decode_body(decode_line(line))))
                    if len(out) == _PIPE_BATCH:
                        send.send(out)
                        out = []
    except BrokenPipeError:
        raise
    except Exception as exc:  # said where it happened; the writer raises it there
        out.append(str(exc) or type(exc).__name__)
    send.send(out)
