"""A store with its projections: how every recorder and reader opens one.

The store layer knows nothing of transactions; the projections follow its index
(`store.py`). Everything above both layers opens a store here, so the projection
tables are current whenever the events are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from p3log.projections.snapshots import ProjectionSnapshots, SnapshotLoader, snapshot_problem
from p3log.projections.store import Progress, ProjectionStore, fold_metadata
from p3log.protocol.dialect import Dialect
from p3log.store import read, verify
from p3log.store.indexer import Indexer, IndexFollower, open_index
from p3log.store.layout import index_lock, open_layout
from p3log.store.log import EventLog
from p3log.store.readonly import lock_down
from p3log.store.segments import EventSegments


def index_followers(root: Path, dialect: Dialect | None = None) -> list[IndexFollower]:
    """What follows the index wherever it is written: the projections, and sealed
    segments and snapshots published for live readers. `dialect` None keeps the
    dialect the store was projected with."""
    return [
        ProjectionStore(dialect),
        EventSegments(root, describe=fold_metadata),
        ProjectionSnapshots(root),
    ]


def open_log(root: Path, *, create: bool = True, dialect: Dialect | None = None) -> EventLog:
    """The store's single writer, indexing in this process, with `index_followers`."""
    return EventLog.open(root, create=create, followers=index_followers(root, dialect))


@contextmanager
def open_indexer(root: Path, *, dialect: Dialect | None = None) -> Iterator[Indexer]:
    """The index's writer without the journal's (`p3log index`, beside a tap): holds
    index.lock, with `index_followers`. Raises StoreBusy while another process has
    the index (its lock, or DuckDB's)."""
    layout, _ = open_layout(root, create=False)
    with index_lock(layout):
        con = open_index(layout)
        try:
            yield Indexer(layout, con, index_followers(root, dialect))
        finally:
            con.close()


def open_store(root: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection with the `events` view and every projection
    (`transactions`, `abort_windows`, ...), as of now: also while a tap records.
    It reads the store's views and nothing else (no file, setting or extension:
    `p3log.store.readonly`)."""
    return lock_down(open_projected(root))


def open_projected(root: str | Path) -> duckdb.DuckDBPyConnection:
    """`open_store` without the lockdown, for p3log's own readers that write files
    (the Parquet export); never hand it to a user."""
    root = Path(root)
    return read.open_store(
        root,
        followers=[ProjectionStore()],
        live_followers=[SnapshotLoader(root), ProjectionStore()],
    )


def rebuild_projections(
    root: Path,
    *,
    dialect: Dialect | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> int:
    """Fold every event of the store at `root` again into empty projection tables;
    returns how many events were folded. Takes both locks, like a recorder that indexes.
    `workers`: fold processes (`ProjectionStore.rebuild`; None: one per core)."""
    with EventLog.open(root, create=False, records=False) as log:
        # A rebuild is the only work on the store: let DuckDB read the facts on
        # every core (a recorder's index runs on one, to leave the others to it).
        log.index.execute(f"SET threads = {os.cpu_count() or 1}")
        return ProjectionStore(dialect).rebuild(log.index, progress, workers)


def verify_store(root: Path, against: verify.Checkpoint | None = None) -> verify.VerifyReport:
    """`p3log verify`: the store's chain, segments and index, and every projection
    snapshot folded again and compared."""
    return verify.verify_store(root, against, checks=[snapshot_problem])


def make_checkpoint(root: Path) -> verify.Checkpoint:
    """A checkpoint of a store that passes `verify_store`."""
    return verify.make_checkpoint(root, checks=[snapshot_problem])
