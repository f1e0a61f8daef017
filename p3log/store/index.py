"""The DuckDB index: the events as a table, for queries.

The index is derived: everything in it comes from the journal, and `ingest_journal`
rebuilds whatever part of it is missing. Rows arrive in batches from the store's
single writer (one Arrow table per batch, one transaction per batch), so insert
order is seq order and readers never see a gap.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.json as pa_json

from p3log.store.errors import StoreCorrupt
from p3log.store.journal import segment_first_seq, segment_paths
from p3log.store.records import RECORD_COLUMNS

# DuckDB's type names (as `RECORD_COLUMNS` and `EVENT_COLUMNS` give them) as Arrow types.
ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "VARCHAR": pa.string(),
    # "element": the name Parquet gives a list's items, so a file's schema reads back equal
    "VARCHAR[]": pa.list_(pa.field("element", pa.string())),
    "BLOB": pa.binary(),
    "DATE": pa.date32(),
    "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
}
# The journal's record columns as Arrow types, for parsing record lines in batches.
_RECORD_SCHEMA = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in RECORD_COLUMNS.items()])
# Larger than any record line (a 1 MiB frame, escaped, plus its base64), so that no
# line straddles two of pyarrow's parse blocks.
_PARSE_BLOCK_BYTES = 8 * 1024 * 1024

# Record columns (journal lines, parsed by DuckDB or pyarrow) -> event_log columns.
RECORDS_AS_ROWS = """
SELECT seq, session_id, sender, kind, msg_type, tag, resource, status,
       to_timestamp(0) + to_microseconds(recorded_at_us) AS recorded_at, mono_ns, payload,
       from_base64(raw_b64) AS raw, parse_note, redaction_policy,
       coalesce(redactions, []) AS redactions, prev_hash, hash
"""

# The columns of `event_log` and their types, as DuckDB's DESCRIBE names them (so a
# Parquet segment's columns can be compared with them): the record's columns, but for
# the time as a timestamp and the bytes as a blob.
_AS_ROW: dict[str, tuple[str, str]] = {
    "recorded_at_us": ("recorded_at", "TIMESTAMP WITH TIME ZONE"),
    "raw_b64": ("raw", "BLOB"),
}
EVENT_COLUMNS: dict[str, str] = dict(
    _AS_ROW.get(name, (name, kind)) for name, kind in RECORD_COLUMNS.items()
)
_OPTIONAL_COLUMNS = frozenset(
    {"msg_type", "tag", "resource", "status", "payload", "raw", "parse_note"}
)
# `event_log`'s columns as a declared Arrow schema (nullability included): what a
# sealed segment holds after its `store_id` (`segments.SEGMENT_SCHEMA`).
EVENT_SCHEMA = pa.schema(
    [
        pa.field(column, ARROW_TYPES[kind], nullable=column in _OPTIONAL_COLUMNS)
        for column, kind in EVENT_COLUMNS.items()
    ]
)
_EVENT_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS {name} ("
    + ", ".join(
        f"{column} {kind}{'' if column in _OPTIONAL_COLUMNS else ' NOT NULL'}"
        for column, kind in EVENT_COLUMNS.items()
    )
    + ")"
)
# The contract's view over `event_log` (a table in the index; for a live reader, a
# view over sealed segments and the journal's tail).
EVENTS_VIEW_DDL = """
-- The contract's view. `raw` is stored only where it differs from the payload text;
-- here it is always the bytes the peer sent (NULL for the tap's own events).
CREATE OR REPLACE VIEW events AS
SELECT seq, session_id, sender, kind, msg_type, tag, resource, status, recorded_at,
       mono_ns, payload, prev_hash, hash,
       CASE WHEN sender = 'tap' THEN NULL ELSE coalesce(raw, encode(payload)) END AS raw,
       parse_note, redaction_policy, redactions
FROM event_log;
"""


# DuckDB's default is 80% of RAM for its buffer pool; a recorder that runs for weeks
# next to the POS must not grow that large. Beyond this, DuckDB spills to disk.
MEMORY_LIMIT = "128MB"
# The writer's inserts are background work: one thread, so that a core stays free
# for the recorder's hot path (reads and verify use every core).
WRITER_THREADS = 1
# DuckDB checkpoints (recompresses and rewrites row groups) whenever its WAL passes
# this size. Its 16 MB default checkpoints every ~10k events and triples the cost
# of an insert; a crash only means a longer WAL replay, and the journal is the
# primary record anyway.
WRITER_CHECKPOINT_THRESHOLD = "256MB"


def connect(path: Path | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection to the index at `path` (in memory if None), UTC, memory-capped."""
    con = duckdb.connect(
        str(path) if path is not None else ":memory:",
        read_only=read_only,
        config={"memory_limit": MEMORY_LIMIT},
    )
    con.execute("SET TimeZone = 'UTC'")
    return con


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    create_event_table(con, "event_log")
    con.execute(EVENTS_VIEW_DDL)


def create_event_table(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """An (empty) table with the columns of `event_log`."""
    con.execute(_EVENT_TABLE_DDL.format(name=name))


def query_one(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()
) -> tuple[Any, ...] | None:
    """The first row of a query, with the result consumed (DuckDB 2 refuses new work
    on a connection whose last result was not read to the end)."""
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0] if rows else None


def query_scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> Any:
    row = query_one(con, sql, params)
    assert row is not None, sql
    return row[0]


def indexed_head(con: duckdb.DuckDBPyConnection) -> int:
    """The highest seq in the index (0 when empty)."""
    return int(query_scalar(con, "SELECT coalesce(max(seq), 0) FROM event_log"))


def insert_records(con: duckdb.DuckDBPyConnection, lines: Sequence[bytes]) -> None:
    """Insert journal record lines as one batch, in one transaction.

    The lines are parsed by pyarrow's multi-threaded JSON reader, which releases the
    GIL: the recording thread pays nothing for the index beyond handing the lines over.
    """
    if lines:
        insert_table(con, records_table(lines))


def records_table(lines: Sequence[bytes]) -> pa.Table:
    """Record lines as an Arrow table of record columns."""
    return pa_json.read_json(
        io.BytesIO(b"".join(lines)),
        # One thread: the index is background work and must leave a core to the hot path.
        read_options=pa_json.ReadOptions(block_size=_PARSE_BLOCK_BYTES, use_threads=False),
        parse_options=pa_json.ParseOptions(
            explicit_schema=_RECORD_SCHEMA, unexpected_field_behavior="error"
        ),
    )


def insert_table(con: duckdb.DuckDBPyConnection, records: pa.Table) -> None:
    """Insert an Arrow table of record columns."""
    con.register("_p3log_batch", records)
    try:
        con.execute(f"INSERT INTO event_log {RECORDS_AS_ROWS} FROM _p3log_batch")
    finally:
        con.unregister("_p3log_batch")


def journal_relation_sql(
    journal_dir: Path, after_seq: int = 0, *, ignore_errors: bool = False
) -> str | None:
    """SQL reading every journal record with seq > after_seq, in record columns.

    Segments that end before `after_seq` are skipped by name. None if there are
    no segments to read. With `ignore_errors` a damaged line reads as a row of
    NULLs (for verify, which reports it) instead of failing the query.
    """
    paths = segment_paths(journal_dir)
    # A segment can only hold seq > after_seq if the next one starts after after_seq + 1.
    wanted = [
        path
        for i, path in enumerate(paths)
        if i + 1 == len(paths) or segment_first_seq(paths[i + 1]) > after_seq + 1
    ]
    if not wanted:
        return None
    files = ", ".join(sql_string(str(path)) for path in wanted)
    columns = ", ".join(f"{name}: '{kind}'" for name, kind in RECORD_COLUMNS.items())
    return (
        f"SELECT * FROM read_json([{files}], format = 'newline_delimited', "
        f"columns = {{{columns}}}, maximum_object_size = 16777216, "
        f"ignore_errors = {str(ignore_errors).lower()}) "
        f"WHERE seq > {int(after_seq)}{' OR seq IS NULL' if ignore_errors else ''}"
    )


def ingest_journal(con: duckdb.DuckDBPyConnection, journal_dir: Path, journal_head: int) -> int:
    """Copy journaled events missing from the index into it; returns how many.

    The journal must hold exactly the seq after the index's head up to
    `journal_head` (its last record's), each once: anything else (records out of
    order, a seq repeated or beyond the last record) is refused with the index
    unchanged, so the writer never assigns a seq the journal already holds.
    Idempotent: only seq above the index's head is read, in one transaction.
    """
    before = indexed_head(con)
    source = journal_relation_sql(journal_dir, after_seq=before)
    if source is None:
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"INSERT INTO event_log {RECORDS_AS_ROWS} FROM ({source})")
        count, distinct, last = query_one(
            con,
            "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), ?) "
            "FROM event_log WHERE seq > ?",
            [before, before],
        ) or (0, 0, before)
        if not count == distinct == last - before or last != journal_head:
            raise StoreCorrupt(
                f"the journal's records after seq {before} are not seq {before + 1} to "
                f"{journal_head}, once each and in order; run p3log verify"
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(last) - before


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
