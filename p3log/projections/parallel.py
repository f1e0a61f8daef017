"""A full rebuild with the fold spread over worker processes.

The fold's state is per session (`fold.py`), so sessions can be folded apart: each
chunk of events (`store.CHUNK_EVENTS`, in seq order) is split by a hash of the
session over the workers, each worker folds its share with its own `Projector`
(which keeps its sessions' state from chunk to chunk) and sends back the rows the
chunk changed, as Arrow tables; the parent writes every worker's rows of a chunk,
and `projected_through`, in one transaction, exactly as the single-process fold
writes the chunk. A session's events always reach the same worker in seq order, and
its rows come back to the one parent that writes them in chunk order, so the tables
are the single-process fold's, row for row (`tests/projections/test_parallel_rebuild.py`).

The parent reads chunk k+1 while the workers fold chunk k, and hands it to them
before writing chunk k's rows. Only the DuckDB work (the events query, the inserts)
stays in the parent; the Python work per event, which is most of a rebuild, is the
workers'.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from p3log.projections.fold import Projector
from p3log.projections.observed import Observed
from p3log.projections.rows import TABLES, Table
from p3log.protocol.dialect import Dialect
from p3log.store.errors import StoreError

_PART = "_p3log_worker"
# A chunk's rows, as the worker sends them: table name -> Arrow table.
Changed = dict[str, pa.Table]
_TABLE_BY_NAME = {table.name: table for table in TABLES}
WORKER_MODULE = "p3log.projections.fold_worker"


def worker_column(workers: int) -> str:
    """The SQL expression that picks a session's worker."""
    return f"hash(session_id) % {int(workers)} AS {_PART}"


def observed_events(table: pa.Table) -> Iterator[Observed]:
    """The rows of a query of `observed_query`'s columns, as `Observed`s."""
    columns = (column.to_pylist() for column in table.columns)
    return map(Observed._make, zip(*columns, strict=True))


def changed_tables(projector: Projector) -> Changed:
    """What the projector changed since it was last asked, as Arrow tables."""
    return {table.name: table.arrow_table(rows) for table, rows in projector.take_changes().items()}


class Workers:
    """Worker processes folding a store's sessions, split by `worker_column`.

    Each is a fresh interpreter (`python -m`, not a fork: the parent runs DuckDB's
    threads, and a `multiprocessing` spawn would import the caller's main script
    again), importing this same p3log."""

    def __init__(self, dialect: Dialect, count: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, (str(Path(__file__).parents[2]), env.get("PYTHONPATH")))
        )
        self._processes: list[subprocess.Popen[bytes]] = []
        self._sends: list[multiprocessing.connection.Connection] = []
        self._answers: list[multiprocessing.connection.Connection] = []
        try:
            for _ in range(count):
                process = subprocess.Popen(
                    [sys.executable, "-m", WORKER_MODULE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
                self._processes.append(process)
                assert process.stdin is not None and process.stdout is not None
                send = multiprocessing.connection.Connection(
                    os.dup(process.stdin.fileno()), readable=False
                )
                process.stdin.close()
                answers = multiprocessing.connection.Connection(
                    os.dup(process.stdout.fileno()), writable=False
                )
                process.stdout.close()
                self._sends.append(send)
                self._answers.append(answers)
                send.send(dialect)
        except BaseException:
            self.close()
            raise

    def send(self, events: pa.Table) -> None:
        """Hand each worker its sessions' events (`events` has `worker_column`)."""
        parts = events.column(_PART)
        events = events.drop_columns([_PART])
        for number, send in enumerate(self._sends):
            try:
                send.send(events.filter(pc.equal(parts, number)))
            except OSError as exc:  # its end of the pipe is gone: it was killed
                raise self._stopped(number) from exc

    def receive(self) -> list[tuple[Table, pa.Table]]:
        """Every worker's rows of the chunk last sent, by table."""
        changed: list[tuple[Table, pa.Table]] = []
        for number, answers in enumerate(self._answers):
            try:
                answer: Changed | BaseException = answers.recv()
            except (EOFError, OSError) as exc:  # it ended mid-answer, or before it
                raise self._stopped(number) from exc
            if isinstance(answer, BaseException):
                raise answer
            changed += [(_TABLE_BY_NAME[name], rows) for name, rows in answer.items()]
        return changed

    def _stopped(self, number: int) -> StoreError:
        # What was written stands: each chunk's rows and projected_through were
        # committed together, and the next open folds on from there.
        return StoreError(
            f"a rebuild worker (pid {self._processes[number].pid}) stopped before it "
            "answered; the projections catch up when the store is next opened, or run "
            "p3log rebuild again"
        )

    def close(self) -> None:
        """Let the workers go: they end at the end of their input."""
        for connection in (*self._sends, *self._answers):
            connection.close()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def parallel_fold(
    workers: Workers,
    chunks: list[tuple[int, int]],
    read: Callable[[int, int], pa.Table],
    write: Callable[[list[tuple[Table, pa.Table]], int, int], None],
) -> None:
    """Fold `chunks` ((after, upto) seq ranges, in order): `read` gives a chunk's
    events with `worker_column`, `write(changed, after, upto)` stores its rows."""
    if not chunks:
        return
    workers.send(read(*chunks[0]))
    for number, (after, upto) in enumerate(chunks):
        following = read(*chunks[number + 1]) if number + 1 < len(chunks) else None
        changed = workers.receive()
        if following is not None:
            workers.send(following)
        write(changed, after, upto)
