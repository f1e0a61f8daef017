"""A rebuild's tables are the fold of every event, row for row, however it runs.

The reference is kept here: one `Projector` fed every event of the store in seq
order, its rows taken once at the end (each row's final version, exactly once).
The stores are test_rebuild_property's hostile ones (interleaved sessions, reused
and unknown tags, aborts, actions, malformed messages, closes), recorded with the
projections following in random batches. Tiny chunks make every session cross
chunk boundaries, so rows written in one chunk are replaced in a later one (the
path a keyed write looks up), in one process and spread over worker processes.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from p3log.projections.fold import Projector
from p3log.projections.observed import observed_query
from p3log.projections.opening import open_log
from p3log.projections.parallel import _PART, Workers, observed_events
from p3log.projections.rows import TABLES
from p3log.projections.store import ProjectionStore
from p3log.protocol.dialect import DEFAULT_DIALECT
from p3log.store.errors import StoreError
from p3log.store.index import query_scalar
from p3log.store.log import EventLog
from tests.projections.test_rebuild_property import Step, _interleave, _record, _tables, stores

Tables = dict[str, list[tuple[Any, ...]]]


def _write_store(root: Path, store: tuple[list[list[Step]], Any]) -> None:
    sessions, rng = store
    with open_log(root) as log:
        for i, (session_id, step) in enumerate(_interleave(sessions, rng)):
            _record(log, session_id, step, 1_700_000_000_000_000 + i * 1_500)
            if rng.random() < 0.3:
                log.flush()


def _one_fold(con: duckdb.DuckDBPyConnection) -> Tables:
    """Every table as one fold of all events gives it, sorted as `_tables` sorts."""
    projector = Projector(DEFAULT_DIALECT)
    projector.feed_all(
        observed_events(con.sql(observed_query(DEFAULT_DIALECT, "events")).to_arrow_table())
    )
    changes = {table: rows for table, rows in projector.take_changes().items()}
    reference: Tables = {}
    for table in TABLES:
        con.register("reference_rows", table.arrow_table(changes.get(table, [])))
        reference[table.name] = con.execute("SELECT * FROM reference_rows ORDER BY ALL").fetchall()
        con.unregister("reference_rows")
    return reference


def _rebuilt(con: duckdb.DuckDBPyConnection, workers: int, chunk_events: int) -> Tables:
    folded = ProjectionStore(chunk_events=chunk_events).rebuild(con, workers=workers)
    assert folded == query_scalar(con, "SELECT count(*) FROM event_log")
    return _tables(con)


_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@contextlib.contextmanager
def _recorded(store: tuple[list[list[Step]], Any]) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store recorded with the projections following, opened for writing."""
    root = Path(tempfile.mkdtemp(prefix="p3log-rebuild-"))
    try:
        _write_store(root, store)
        with EventLog.open(root, create=False) as log:
            yield log.index
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=12, **_SETTINGS)  # type: ignore[arg-type]
@given(stores)
def test_rebuild_in_small_chunks_equals_one_fold_of_all_events(
    store: tuple[list[list[Step]], Any],
) -> None:
    with _recorded(store) as con:
        reference = _one_fold(con)
        assert _tables(con) == reference  # the incremental follow's tables
        for chunk_events in (1, 6):
            assert _rebuilt(con, 1, chunk_events) == reference


@settings(max_examples=5, **_SETTINGS)  # type: ignore[arg-type]
@given(stores)
def test_rebuild_over_worker_processes_equals_one_fold_of_all_events(
    store: tuple[list[list[Step]], Any],
) -> None:
    with _recorded(store) as con:
        reference = _one_fold(con)
        assert _rebuilt(con, 2, 3) == reference
        assert _rebuilt(con, 3, 5) == reference
        # and a writer resumes from the tables a parallel rebuild left
        assert ProjectionStore().follow(con) == 0
        assert _tables(con) == reference


def test_a_killed_worker_stops_the_rebuild_in_one_line() -> None:
    """A fold worker killed mid-rebuild: the rebuild stops with a StoreError (one plain
    line from `p3log rebuild`), not a traceback of the pipe's end."""
    pool = Workers(DEFAULT_DIALECT, 2)
    try:
        victim = pool._processes[1]
        victim.kill()
        victim.wait()
        events = pa.table({"seq": pa.array([], pa.int64()), _PART: pa.array([], pa.int64())})
        with pytest.raises(StoreError, match=rf"rebuild worker \(pid {victim.pid}\) stopped"):
            pool.send(events)
            pool.receive()
    finally:
        pool.close()
