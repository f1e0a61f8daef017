"""The DuckDB index: the events as a table, for queries.

The index is derived: everything in it comes from the journal, and `ingest_journal`
rebuilds whatever part of it is missing. Rows arrive in batches from the store's
single writer (one Arrow table per batch, one transaction per batch), so insert
order is seq order and readers never see a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from p3log.store.event import Event
from p3log.store.journal import segment_first_seq, segment_paths
from p3log.store.records import RECORD_COLUMNS

_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("sender", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("msg_type", pa.string()),
        pa.field("tag", pa.string()),
        pa.field("resource", pa.string()),
        pa.field("status", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("mono_ns", pa.int64(), nullable=False),
        pa.field("payload", pa.string()),
        pa.field("raw", pa.binary()),
        pa.field("parse_note", pa.string()),
        pa.field("redaction_policy", pa.string(), nullable=False),
        pa.field("redactions", pa.list_(pa.string()), nullable=False),
        pa.field("prev_hash", pa.string(), nullable=False),
        pa.field("hash", pa.string(), nullable=False),
    ]
)

_DDL = """
CREATE TABLE IF NOT EXISTS event_log (
    seq BIGINT NOT NULL,
    session_id VARCHAR NOT NULL,
    sender VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    msg_type VARCHAR,
    tag VARCHAR,
    resource VARCHAR,
    status VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL,
    mono_ns BIGINT NOT NULL,
    payload VARCHAR,
    raw BLOB,
    parse_note VARCHAR,
    redaction_policy VARCHAR NOT NULL,
    redactions VARCHAR[] NOT NULL,
    prev_hash VARCHAR NOT NULL,
    hash VARCHAR NOT NULL
);
-- The contract's view. `raw` is stored only where it differs from the payload text;
-- here it is always the bytes the peer sent (NULL for the tap's own events).
CREATE OR REPLACE VIEW events AS
SELECT seq, session_id, sender, kind, msg_type, tag, resource, status, recorded_at,
       mono_ns, payload, prev_hash, hash,
       CASE WHEN sender = 'tap' THEN NULL ELSE coalesce(raw, encode(payload)) END AS raw,
       parse_note, redaction_policy, redactions
FROM event_log;
"""


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_DDL)


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


def insert_events(con: duckdb.DuckDBPyConnection, events: Sequence[Event]) -> None:
    """Insert one batch as one Arrow table in one transaction."""
    if events:
        insert_table(con, events_table(events))


def insert_table(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    con.register("_p3log_batch", table)
    try:
        con.execute("INSERT INTO event_log SELECT * FROM _p3log_batch")
    finally:
        con.unregister("_p3log_batch")


def events_table(events: Sequence[Event]) -> pa.Table:
    """The events as an Arrow table with the index's schema."""
    bodies = [event.body for event in events]
    return pa.Table.from_arrays(
        [
            [event.seq for event in events],
            [body.session_id for body in bodies],
            [body.sender for body in bodies],
            [body.kind for body in bodies],
            [body.msg_type for body in bodies],
            [body.tag for body in bodies],
            [body.resource for body in bodies],
            [body.status for body in bodies],
            [body.stamp.recorded_at_us for body in bodies],
            [body.stamp.mono_ns for body in bodies],
            [body.payload for body in bodies],
            [body.raw for body in bodies],
            [body.parse_note for body in bodies],
            [body.redaction_policy for body in bodies],
            [list(body.redactions) for body in bodies],
            [event.prev_hash for event in events],
            [event.hash for event in events],
        ],
        schema=_SCHEMA,
    )


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
        f"columns = {{{columns}}}, maximum_object_size = 268435456, "
        f"ignore_errors = {str(ignore_errors).lower()}) "
        f"WHERE seq > {int(after_seq)}{' OR seq IS NULL' if ignore_errors else ''}"
    )


def ingest_journal(con: duckdb.DuckDBPyConnection, journal_dir: Path) -> int:
    """Copy journaled events missing from the index into it; returns how many.

    Idempotent: only seq above the index's head is read, in one transaction.
    """
    before = indexed_head(con)
    source = journal_relation_sql(journal_dir, after_seq=before)
    if source is None:
        return 0
    con.execute(
        f"""
        INSERT INTO event_log
        SELECT seq, session_id, sender, kind, msg_type, tag, resource, status,
               to_timestamp(0) + to_microseconds(recorded_at_us), mono_ns, payload,
               from_base64(raw_b64), parse_note, redaction_policy,
               coalesce(redactions, []), prev_hash, hash
        FROM ({source}) ORDER BY seq
        """
    )
    return indexed_head(con) - before


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
