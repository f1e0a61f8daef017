"""The projection tables in the index, kept level with its events.

Projections are tables, not SQL views: the fold (`fold.py`) is the one definition
of the lifecycle, and a table is what lets `p3log sql` read a million transactions
without refolding ten million events per query. Whoever writes the index (the tap's
index writer, recovery on open, an import) calls `ProjectionStore.follow` after each
batch; it folds the new events and replaces the rows they changed, in the same
transaction that advances `projection_meta.projected_through`. The tables are
therefore always exactly the fold of events 1..projected_through.

A process that starts on an existing store has no fold state. It rebuilds just what
it needs: the sessions still open at `projected_through` are trimmed back to their
last close and folded again from there (state is per session and dropped at close,
see `fold.py`), and the fold continues. A store projected under another projection
version or dialect is rebuilt from scratch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from p3log.projections.fold import Projector
from p3log.projections.observed import Observed, observed_query
from p3log.projections.parallel import Workers, observed_events, parallel_fold, worker_column
from p3log.projections.rows import TABLES, Table
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect, dialect_from_dict, dialect_to_dict
from p3log.store.index import indexed_head, query_one, query_scalar
from p3log.store.lifecycle import ConnectionClosed
from p3log.store.parquet import META_DIALECT, META_DIALECT_SHA256, META_PROJECTION_VERSION

logger = logging.getLogger("p3log")

# Bump when the fold's rules or the tables change: stores projected before rebuild.
PROJECTION_VERSION = 2  # 2: issue 12, requests and responses by the dialect's kinds
# Events folded per transaction: bounds the rows one insert holds in memory.
CHUNK_EVENTS = 50_000
# A rebuild of fewer events folds in-process: starting a worker costs about what
# folding this many events does.
PARALLEL_EVENTS = 200_000

_META_DDL = """
CREATE TABLE IF NOT EXISTS projection_meta (
    version INTEGER NOT NULL,
    dialect VARCHAR NOT NULL,
    projected_through BIGINT NOT NULL
)
"""

Progress = Callable[[int, int], None]
"""Called with (events folded so far, events to fold) after each chunk."""


class ProjectionStore:
    """Keeps one index's projection tables level with its events.

    `dialect` None means the dialect the store was last projected with (docs/protocol.md's
    default for a new store); a different explicit dialect rebuilds the projections.
    """

    def __init__(self, dialect: Dialect | None = None, chunk_events: int = CHUNK_EVENTS) -> None:
        self._requested = dialect
        self._chunk = chunk_events
        self._projector: Projector | None = None
        self._through = -1

    def follow(self, con: duckdb.DuckDBPyConnection, progress: Progress | None = None) -> int:
        """Fold every event the tables have not seen; returns how many."""
        state = projected_state(con)
        if self._projector is None or state is None or state[1] != self._through:
            self._projector = self._resume(con, state)
        head = indexed_head(con)
        total = head - self._through
        folded = 0
        while self._through < head:
            upto = min(self._through + self._chunk, head)
            folded += self._fold(
                con, _events_between(con, self._through, upto, self._projector.dialect), upto
            )
            if progress is not None:
                progress(folded, total)
        return folded

    def rebuild(
        self,
        con: duckdb.DuckDBPyConnection,
        progress: Progress | None = None,
        workers: int | None = None,
    ) -> int:
        """Fold every event again, from empty tables; returns how many. The fold runs
        in `workers` processes (None: one per core, for a store of at least
        `PARALLEL_EVENTS`); 1 folds in this one, as `follow` does."""
        state = projected_state(con)
        dialect = self._requested or (state[0] if state else None) or DEFAULT_DIALECT
        _drop(con)
        create_tables(con, dialect)
        self._projector = None
        head = indexed_head(con)
        if workers is None:
            workers = (os.cpu_count() or 1) if head >= PARALLEL_EVENTS else 1
        if workers < 2:
            return self.follow(con, progress)
        chunks = [(after, min(after + self._chunk, head)) for after in range(0, head, self._chunk)]

        def read(after: int, upto: int) -> pa.Table:
            source = f"events WHERE seq > {int(after)} AND seq <= {int(upto)}"
            return con.sql(observed_query(dialect, source, worker_column(workers))).to_arrow_table()

        def write(changed: list[tuple[Table, pa.Table]], after: int, upto: int) -> None:
            _write_chunk(con, changed, after, upto)
            if progress is not None:
                progress(upto, head)

        pool = Workers(dialect, workers)
        try:
            parallel_fold(pool, chunks, read, write)
        finally:
            pool.close()
        # The fold's state stayed in the workers: a later `follow` resumes from the
        # tables, as a new process would.
        self._through = -1
        return head

    def _resume(
        self, con: duckdb.DuckDBPyConnection, state: tuple[Dialect, int] | None
    ) -> Projector:
        recorded = state[0] if state is not None else None
        dialect = self._requested or recorded or DEFAULT_DIALECT
        if state is None or dialect != recorded:
            _drop(con)
            create_tables(con, dialect)
            self._through = 0
            return Projector(dialect)
        self._through = state[1]
        self._projector = Projector(dialect)
        self._fold(con, _reopen_sessions(con, self._through, dialect), self._through)
        return self._projector

    def _fold(self, con: duckdb.DuckDBPyConnection, events: Iterator[Observed], upto: int) -> int:
        """Fold `events` (those after `self._through`, or a reopened session's) and
        write what they changed, as the tables' state at `upto`."""
        projector = self._projector
        assert projector is not None
        count = 0
        for event in events:
            projector.feed(event)
            count += 1
        changed = [
            (table, table.arrow_table(rows)) for table, rows in projector.take_changes().items()
        ]
        _write_chunk(con, changed, self._through, upto)
        self._through = upto
        return count


def _write_chunk(
    con: duckdb.DuckDBPyConnection, changed: list[tuple[Table, pa.Table]], after: int, upto: int
) -> None:
    """Write the rows a chunk of events changed, and `projected_through = upto`, in one
    transaction: the tables are always the fold of events 1..projected_through."""
    con.execute("BEGIN TRANSACTION")
    try:
        for table, rows in changed:
            _write(con, table, rows, after)
        con.execute("UPDATE projection_meta SET projected_through = ?", [upto])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def projected_state(con: duckdb.DuckDBPyConnection) -> tuple[Dialect, int] | None:
    """The dialect and head the tables were projected with; None if they must be built."""
    exists = query_scalar(
        con,
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE table_name = 'projection_meta' AND database_name = current_database()",
    )
    if not exists:
        return None
    row = query_one(con, "SELECT version, dialect, projected_through FROM projection_meta")
    if row is None or row[0] != PROJECTION_VERSION:
        return None
    return dialect_from_dict(orjson.loads(row[1]), "projection_meta.dialect"), int(row[2])


def fold_metadata(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """How the store at `con` folds its events, as p3log's Parquet files carry it in
    their key-value metadata (sealed segments, snapshots) and the export's manifest:
    `PROJECTION_VERSION` and the dialect (canonical JSON, and its SHA-256, which
    names it). Empty while the tables are not projected under this version."""
    state = projected_state(con)
    if state is None:
        return {}
    dialect = orjson.dumps(dialect_to_dict(state[0]), option=orjson.OPT_SORT_KEYS)
    return {
        META_PROJECTION_VERSION: str(PROJECTION_VERSION),
        META_DIALECT: dialect.decode(),
        META_DIALECT_SHA256: hashlib.sha256(dialect).hexdigest(),
    }


def create_tables(con: duckdb.DuckDBPyConnection, dialect: Dialect, through: int = 0) -> None:
    """Empty projection tables, and the meta row saying they hold events 1..through."""
    for table in TABLES:
        con.execute(table.ddl())
    con.execute(_META_DDL)
    dialect_json = orjson.dumps(dialect_to_dict(dialect)).decode()
    con.execute(
        "INSERT INTO projection_meta VALUES (?, ?, ?)",
        [PROJECTION_VERSION, dialect_json, through],
    )


def _drop(con: duckdb.DuckDBPyConnection) -> None:
    for table in (*(table.name for table in TABLES), "projection_meta"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _reopen_sessions(
    con: duckdb.DuckDBPyConnection, through: int, dialect: Dialect
) -> Iterator[Observed]:
    """Trim the sessions open at `through` back to their last close; returns their
    events since that close, to fold again. (Trimming outside the fold's transaction
    is safe: a crash before the fold commits just trims and folds them again.)"""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE reopened AS
        SELECT session_id,
               coalesce(max(seq) FILTER (WHERE kind = '{ConnectionClosed.KIND}'), 0) AS since
        FROM events WHERE seq <= ?
        GROUP BY session_id
        HAVING max(seq) > since
        """,
        [through],
    )
    for table in TABLES:
        con.execute(
            f"DELETE FROM {table.name} t USING reopened r "
            f"WHERE t.session_id = r.session_id AND t.{table.origin} > r.since"
        )
    source = (
        "events e JOIN reopened r USING (session_id) "
        f"WHERE e.seq > r.since AND e.seq <= {int(through)}"
    )
    return _observe(con, observed_query(dialect, source))


def _events_between(
    con: duckdb.DuckDBPyConnection, after: int, upto: int, dialect: Dialect
) -> Iterator[Observed]:
    source = f"events WHERE seq > {int(after)} AND seq <= {int(upto)}"
    return _observe(con, observed_query(dialect, source))


def _observe(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[Observed]:
    return observed_events(con.sql(sql).to_arrow_table())


def _write(con: duckdb.DuckDBPyConnection, table: Table, rows: pa.Table, after: int) -> None:
    """Append the rows of events after `after`; a keyed row of an earlier event replaces
    its earlier version.

    A keyed table's key is its row's origin event, so only rows keyed at or before
    `after` can be in the table already: the others are appended without a lookup. The
    lookup of the rest is bounded by their smallest key, so DuckDB skips the row groups
    before it by their min/max (rows arrive roughly in key order): what a write costs
    depends on the rows it writes, not on the rows the table holds.
    """
    if table.key is not None:
        keys = rows.column(table.key)
        replaced = keys.filter(pc.less_equal(keys, after))
        if len(replaced):
            con.register("replaced_keys", pa.table({"key": replaced}))
            try:
                con.execute(
                    f"DELETE FROM {table.name} WHERE {table.key} BETWEEN ? AND ? "
                    f"AND {table.key} IN (SELECT key FROM replaced_keys)",
                    [pc.min(replaced).as_py(), after],
                )
            finally:
                con.unregister("replaced_keys")
    con.register("changed_rows", rows)
    try:
        con.execute(f"INSERT INTO {table.name} SELECT * FROM changed_rows")
    finally:
        con.unregister("changed_rows")
