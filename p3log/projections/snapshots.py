"""Projection snapshots: Parquet copies of the tables, for readers of a live store.

A live reader (`p3log.store.live`) cannot open the recorder's index, so it cannot
read the projection tables there. It could fold every event itself, which is fine
for a day at one till and slow for ten million events. So the recorder publishes
a snapshot of the tables now and then, and a reader loads the latest one and
folds only the events after it (`ProjectionStore.follow` resumes from a snapshot
exactly as from its own tables).

A snapshot is a directory `segments/projections-<through>/` holding one Parquet
file per table and `meta.json` (version, dialect, through, and `head_hash`: the
chain's hash at `through`), written under a temporary name and renamed into place,
so a reader sees whole snapshots only. Each file has its table's declared schema
(`Table.arrow_schema`) and names the store and how it folded in its key-value
metadata (`p3log.store_id`, `p3log.projection_version`, `p3log.dialect`,
`p3log.dialect_sha256`).

What binds a snapshot to the chain: a live reader loads it only if its `head_hash`
is the hash of event `through` in the (checked) sealed segments or journal, so a
snapshot of another store or of a chain since rewritten is refused. Its tables are
not checked at open (that would mean folding the events it saves folding);
`p3log verify` does: it folds events 1..through again and compares every table
(`snapshot_problem`). So a forged snapshot is caught by verify, not by a reader.
Publishing costs time proportional to the tables, so it happens after at least
`SNAPSHOT_EVENTS` new events and never more often than ten times its last cost.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import orjson

from p3log.projections.rows import TABLES
from p3log.projections.store import (
    PROJECTION_VERSION,
    ProjectionStore,
    create_tables,
    fold_metadata,
    projected_state,
)
from p3log.protocol.dialect import DialectError, dialect_from_dict
from p3log.store.chain import ChainProblem
from p3log.store.errors import StoreCorrupt
from p3log.store.index import (
    EVENTS_VIEW_DDL,
    RECORDS_AS_ROWS,
    journal_relation_sql,
    query_one,
    query_scalar,
    sql_string,
)
from p3log.store.layout import StoreLayout, open_layout
from p3log.store.parquet import META_STORE_ID, write_parquet
from p3log.store.segments import segments_dir

SNAPSHOT_EVENTS = 50_000
# A snapshot takes at most a tenth of the recorder's index thread.
_COST_FACTOR = 10
_PREFIX = "projections-"
_META = "meta.json"
_BATCH_ROWS = 100_000


class ProjectionSnapshots:
    """An index follower (after `ProjectionStore`) that publishes snapshots."""

    def __init__(
        self,
        root: Path,
        every_events: int = SNAPSHOT_EVENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = root
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

    def _store_id(self) -> str:
        return open_layout(self._root, create=False)[1].store_id

    def _publish(self, index: duckdb.DuckDBPyConnection, through: int) -> None:
        self._dir.mkdir(exist_ok=True)
        final = self._dir / f"{_PREFIX}{through:020d}"
        partial = self._dir / f"{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        metadata = {META_STORE_ID: self._store_id(), **fold_metadata(index)}
        for table in TABLES:
            rows = index.sql(f"FROM {table.name}").to_arrow_reader(_BATCH_ROWS)
            schema = table.arrow_schema.with_metadata(metadata)
            write_parquet(rows, partial / f"{table.name}.parquet", schema)
        dialect = index.execute("SELECT dialect FROM projection_meta").fetchall()[0][0]
        head_hash = query_scalar(index, "SELECT hash FROM event_log WHERE seq = ?", [through])
        meta = {
            "version": PROJECTION_VERSION,
            "dialect": orjson.loads(dialect),
            "through": through,
            "head_hash": head_hash,
        }
        (partial / _META).write_bytes(orjson.dumps(meta))
        partial.rename(final)
        self._published = through
        for older, _ in _snapshots(self._dir)[:-2]:  # keep one for readers loading it now
            shutil.rmtree(older, ignore_errors=True)


def load_snapshot(con: duckdb.DuckDBPyConnection, root: Path) -> int:
    """Load the latest snapshot into `con`'s projection tables; returns the seq it
    covers (0 when there is none, or it belongs to another projection version or to
    a p3log that did not record its head hash). Refuses one whose head hash is not
    the chain's at its seq, as `con`'s events have it. A snapshot beyond `con`'s last
    event (published after a live reader copied the journal's tail) cannot be checked
    against its events: the latest one within them is loaded instead."""
    head = query_scalar(con, "SELECT coalesce(max(seq), 0) FROM event_log")
    within = [found for found in _snapshots(segments_dir(root)) if found[1] <= head]
    latest = within[-1] if within else None
    if latest is None:
        return 0
    path, through = latest
    meta = _read_meta(path)
    if meta.get("version") != PROJECTION_VERSION or "head_hash" not in meta:
        return 0
    chain = query_one(con, "SELECT hash FROM event_log WHERE seq = ?", [through])
    if chain is None or chain[0] != meta["head_hash"]:
        raise StoreCorrupt(
            f"the projection snapshot {path} does not match the store's hash chain at seq "
            f"{through}; not reading it: run p3log verify"
        )
    try:
        create_tables(con, dialect_from_dict(meta["dialect"], str(path / _META)), through)
        for table in TABLES:
            source = sql_string(str(path / f"{table.name}.parquet"))
            con.execute(f"INSERT INTO {table.name} SELECT * FROM read_parquet({source})")
    except (duckdb.Error, DialectError) as exc:
        raise StoreCorrupt(
            f"the projection snapshot {path} is damaged ({exc}); run p3log verify"
        ) from exc
    return through


def snapshot_problem(con: duckdb.DuckDBPyConnection, root: Path) -> ChainProblem | None:
    """A `verify` check: every snapshot must name the chain's hash at its seq and
    hold exactly the tables of folding events 1..through again (into `con`); so must
    the index's own projection tables, which idle readers read (the fold goes on
    from the last snapshot to the seq the index says its tables hold)."""
    snapshots = _snapshots(segments_dir(root))
    indexed = query_scalar(
        con, "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'idx'"
    )
    if not snapshots and not indexed:
        return None
    journal = journal_relation_sql(StoreLayout(root).journal_dir, ignore_errors=True)
    events = "idx.event_log" if indexed else f"({RECORDS_AS_ROWS} FROM ({journal}))"
    folder, folding = ProjectionStore(), None
    for path, through in snapshots:
        name = f"{segments_dir(root).name}/{path.name}"
        try:
            meta = _read_meta(path)
            dialect = dialect_from_dict(meta["dialect"], str(path / _META))
        except (StoreCorrupt, DialectError, KeyError, TypeError) as exc:
            return ChainProblem(through, name, f"meta.json is damaged ({exc})")
        head = query_one(con, "SELECT hash FROM journal_hashes WHERE seq = ?", [through])
        if meta.get("version") != PROJECTION_VERSION or head is None:
            return ChainProblem(through, name, "not a snapshot of this store's events")
        # Without a head_hash (an older p3log's) readers do not use it; still compared.
        if meta.get("head_hash", head[0]) != head[0]:
            return ChainProblem(through, name, "its head_hash is not the chain's at its seq")
        con.execute(
            f"CREATE OR REPLACE VIEW event_log AS SELECT * FROM {events} WHERE seq <= {through}"
        )
        con.execute(EVENTS_VIEW_DDL)
        if dialect != folding:  # a new dialect folds again from seq 1
            folder, folding = ProjectionStore(dialect), dialect
        folder.follow(con)
        differs = _table_differing(con, path)
        if differs is not None:
            return ChainProblem(through, name, f"{differs} is not the fold of events 1..{through}")
    if not indexed:
        return None
    return _index_tables_problem(con, events, folder, folding)


def _index_tables_problem(
    con: duckdb.DuckDBPyConnection, events: str, folder: ProjectionStore, folding: Any
) -> ChainProblem | None:
    """The index's projection tables (attached as `idx`) must be the fold of events
    1..projected_through. Tables of another projection version are rebuilt by the next
    reader that opens the store, so they are not compared."""
    try:
        row = query_one(con, "SELECT version, dialect, projected_through FROM idx.projection_meta")
        if row is None or row[0] != PROJECTION_VERSION:
            return None
        dialect = dialect_from_dict(orjson.loads(row[1]), "projection_meta.dialect")
        through = int(row[2])
    except duckdb.CatalogException:
        return None  # no projections yet
    except (duckdb.Error, DialectError, orjson.JSONDecodeError, TypeError, ValueError) as exc:
        return ChainProblem(0, "index", f"projection_meta is damaged ({exc})")
    con.execute(
        f"CREATE OR REPLACE VIEW event_log AS SELECT * FROM {events} WHERE seq <= {through}"
    )
    con.execute(EVENTS_VIEW_DDL)
    state = projected_state(con)
    if dialect != folding or state is None or state[1] > through:  # fold again from seq 1
        for table in (*TABLES, "projection_meta"):
            con.execute(f"DROP TABLE IF EXISTS {getattr(table, 'name', table)}")
        folder = ProjectionStore(dialect)
    folder.follow(con)
    for table in TABLES:
        try:
            differing = query_scalar(
                con,
                f"SELECT count(*) FROM ((FROM idx.{table.name} EXCEPT ALL FROM {table.name}) "
                f"UNION ALL (FROM {table.name} EXCEPT ALL FROM idx.{table.name}))",
            )
        except duckdb.Error:
            differing = 1
        if differing:
            return ChainProblem(
                through, "index", f"the table {table.name} is not the fold of events 1..{through}"
            )
    return None


def _table_differing(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """The first projection table whose snapshot file differs from `con`'s table."""
    for table in TABLES:
        source = f"read_parquet({sql_string(str(path / f'{table.name}.parquet'))})"
        try:
            columns = [row[:2] for row in con.execute(f"DESCRIBE FROM {source}").fetchall()]
            expected = [row[:2] for row in con.execute(f"DESCRIBE {table.name}").fetchall()]
            if columns != expected:  # (name, type): Parquet does not keep NOT NULL
                return f"{table.name}.parquet"
            differing = query_scalar(
                con,
                f"SELECT count(*) FROM ((FROM {source} EXCEPT ALL FROM {table.name}) "
                f"UNION ALL (FROM {table.name} EXCEPT ALL FROM {source}))",
            )
        except duckdb.Error:
            return f"{table.name}.parquet"
        if differing:
            return f"{table.name}.parquet"
    return None


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = orjson.loads((path / _META).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StoreCorrupt(f"cannot read {path / _META} ({exc})") from exc
    if not isinstance(meta, dict):
        raise StoreCorrupt(f"{path / _META} is not a snapshot description")
    return meta


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
