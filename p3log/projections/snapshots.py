"""Projection snapshots: Parquet copies of the tables, for readers of a live store.

A live reader (`p3log.store.live`) cannot open the recorder's index, so it cannot
read the projection tables there. It could fold every event itself, which is fine
for a day at one till and slow for ten million events. So the recorder publishes
a snapshot of the tables now and then, and a reader loads the latest one and
folds only the events after it (`ProjectionStore.follow` resumes from a snapshot
exactly as from its own tables).

A snapshot is a directory `segments/projections-<through>/` holding one Parquet
file per table and `meta.json` (version, dialect, through), written under a
temporary name and renamed into place, so a reader sees whole snapshots only.
Publishing costs time proportional to the tables, so it happens after at least
`SNAPSHOT_EVENTS` new events and never more often than ten times its last cost.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson

from p3log.projections.rows import TABLES
from p3log.projections.store import PROJECTION_VERSION, create_tables, projected_state
from p3log.protocol.dialect import dialect_from_dict
from p3log.store.index import sql_string
from p3log.store.segments import segments_dir

SNAPSHOT_EVENTS = 50_000
# A snapshot takes at most a tenth of the recorder's index thread.
_COST_FACTOR = 10
_PREFIX = "projections-"
_META = "meta.json"


class ProjectionSnapshots:
    """An index follower (after `ProjectionStore`) that publishes snapshots."""

    def __init__(
        self,
        root: Path,
        every_events: int = SNAPSHOT_EVENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = segments_dir(root)
        self._every = every_events
        self._clock = clock
        latest = _latest(self._dir)
        self._published = latest[1] if latest else 0
        self._next_allowed = 0.0

    def follow(self, index: duckdb.DuckDBPyConnection) -> int:
        """Publish a snapshot if one is due; returns the seq it covers (0: none)."""
        state = projected_state(index)
        if state is None or state[1] - self._published < self._every:
            return 0
        now = self._clock()
        if now < self._next_allowed:
            return 0
        self._publish(index, state[1])
        self._next_allowed = now + _COST_FACTOR * (self._clock() - now)
        return state[1]

    def _publish(self, index: duckdb.DuckDBPyConnection, through: int) -> None:
        self._dir.mkdir(exist_ok=True)
        final = self._dir / f"{_PREFIX}{through:020d}"
        partial = self._dir / f"{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for table in TABLES:
            target = sql_string(str(partial / f"{table.name}.parquet"))
            index.execute(f"COPY {table.name} TO {target} (FORMAT parquet, COMPRESSION zstd)")
        dialect = index.execute("SELECT dialect FROM projection_meta").fetchall()[0][0]
        meta = {"version": PROJECTION_VERSION, "dialect": orjson.loads(dialect), "through": through}
        (partial / _META).write_bytes(orjson.dumps(meta))
        partial.rename(final)
        self._published = through
        for older, _ in _snapshots(self._dir)[:-2]:  # keep one for readers loading it now
            shutil.rmtree(older, ignore_errors=True)


def load_snapshot(con: duckdb.DuckDBPyConnection, root: Path) -> int:
    """Load the latest snapshot into `con`'s projection tables; returns the seq it
    covers (0 when there is none, or it belongs to another projection version)."""
    latest = _latest(segments_dir(root))
    if latest is None:
        return 0
    path, through = latest
    meta = orjson.loads((path / _META).read_bytes())
    if meta["version"] != PROJECTION_VERSION:
        return 0
    create_tables(con, dialect_from_dict(meta["dialect"], str(path / _META)), through)
    for table in TABLES:
        source = sql_string(str(path / f"{table.name}.parquet"))
        con.execute(f"INSERT INTO {table.name} SELECT * FROM read_parquet({source})")
    return through


class SnapshotLoader:
    """A live reader's follower: loads the latest snapshot once, before the fold."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def follow(self, index: duckdb.DuckDBPyConnection) -> int:
        return load_snapshot(index, self._root) if projected_state(index) is None else 0


def _snapshots(directory: Path) -> list[tuple[Path, int]]:
    if not directory.is_dir():
        return []
    found = [
        (path, int(path.name.removeprefix(_PREFIX)))
        for path in directory.iterdir()
        if path.name.startswith(_PREFIX) and path.name.removeprefix(_PREFIX).isdigit()
    ]
    return sorted(found, key=lambda item: item[1])


def _latest(directory: Path) -> tuple[Path, int] | None:
    found = _snapshots(directory)
    return found[-1] if found else None
