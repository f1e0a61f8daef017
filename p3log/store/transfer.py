"""Moving events in and out of a store: JSONL (the journal's record format) and Parquet.

Import appends through the store's normal write path, so imported events are
redacted, sequenced and chained by the receiving store: seq and hashes in the file
are not trusted, they are recomputed. Exporting a store and importing the file into
an empty store reproduces the file byte for byte.

The Parquet export is Hive-partitioned by day and resource, for engines that read a
directory of Parquet files (docs/store.md, "Export"). This module writes the events'
part of it; `p3log.projections.export` writes the whole export, projections included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from p3log.store.errors import ImportFileError, StoreError
from p3log.store.event import Event, EventBody, Stamp
from p3log.store.index import query_scalar, sql_string
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.records import RecordError, decode_body, decode_line, encode_record

ExportFormat = Literal["jsonl", "parquet"]
_BATCH_ROWS = 10_000

# The Parquet export's partitioning: `day=YYYY-MM-DD/resource=<value>/`. A NULL
# resource (and an empty one, which Spark refuses as a directory name) is written as
# DuckDB writes NULL: Hive's default partition, which DuckDB, Spark, Trino, pyarrow
# and polars read back as NULL.
PARTITION_COLUMNS = ("day", "resource")
PARTITION_TYPES = {"day": "DATE", "resource": "VARCHAR"}
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# DuckDB keeps every open partition's rows in memory until its COPY ends, so one COPY
# of a year of events needs about as much memory as the events (1 GB for a million).
# The export copies this many rows at a time instead, which stays well inside the
# index's memory limit (a sealed segment holds as many events).
EXPORT_BATCH_ROWS = 20_000


def import_jsonl(root: Path, source: Path) -> int:
    """Append every event of `source` to the store; returns how many.

    The whole file is checked before the first event is appended, so a bad line
    leaves the store unchanged.
    """
    bodies = list(_read_bodies(source))
    with EventLog.open(root) as log:
        log.refuse_own_configuration(bodies)
        for body in bodies:
            log.record_imported(body)
            if log.pending_count >= _BATCH_ROWS:
                log.flush()
    return len(bodies)


def export_store(root: Path, fmt: Literal["jsonl"], target: Path) -> int:
    """Write every event, in seq order, to `target` as JSONL; returns how many.

    (The Parquet export holds the projections too, so it lives a layer up:
    `p3log.projections.export.export_parquet`.)
    """
    con = open_store(root)
    try:
        with target.open("wb") as out:
            for event in _events_in_order(con):
                out.write(encode_record(event))
        return int(query_scalar(con, "SELECT count(*) FROM events"))
    except (OSError, duckdb.IOException) as exc:
        raise StoreError(f"cannot write {target}: {exc}") from exc
    finally:
        con.close()


def partition_day_sql(column: str) -> str:
    """The UTC date of a TIMESTAMPTZ column, whatever the session's time zone."""
    return f"CAST(timezone('UTC', {column}) AS DATE)"


def partition_resource_sql(column: str) -> str:
    return f"nullif({column}, '')"


_PARQUET_OPTIONS = (
    f"FORMAT parquet, PARTITION_BY ({', '.join(PARTITION_COLUMNS)}), "
    # OVERWRITE_OR_IGNORE: each range adds its own files to directories already there
    "WRITE_PARTITION_COLUMNS true, COMPRESSION zstd, OVERWRITE_OR_IGNORE"
)


def copy_partitioned(
    con: duckdb.DuckDBPyConnection,
    query: str,
    directory: Path,
    *,
    source: str,
    origin: str,
    batch_rows: int | None = None,
) -> int:
    """Write the rows of `query`, whose columns include `day` and `resource`, under
    `directory` as Hive-partitioned Parquet; returns how many rows.

    `query` yields one row per row of the table `source`, with its column `origin`
    (a seq). The rows are copied in ranges of `origin` of about `batch_rows` rows
    (`EXPORT_BATCH_ROWS`), each range into files of its own, named
    `part-<range>-<n>.parquet`. The partition columns are also kept in the files, so
    a file read on its own still has them.
    """
    directory.mkdir(exist_ok=True)  # also when there are no rows to write
    batch_rows = batch_rows or EXPORT_BATCH_ROWS
    starts = [
        int(row[0])
        for row in con.execute(
            f"SELECT {origin} FROM (SELECT {origin}, "
            f"row_number() OVER (ORDER BY {origin}) AS n FROM {source}) "
            f"WHERE n % {batch_rows} = 1 ORDER BY ALL"
        ).fetchall()
    ]
    written = 0
    for number, start in enumerate(starts):
        end = f" AND {origin} < {starts[number + 1]}" if number + 1 < len(starts) else ""
        written += int(
            query_scalar(
                con,
                f"COPY (SELECT * FROM ({query}) WHERE {origin} >= {start}{end}) "
                f"TO {sql_string(str(directory))} ({_PARQUET_OPTIONS}, "
                f"FILENAME_PATTERN 'part-{number:06d}-{{i}}')",
            )
        )
    return written


def export_events_parquet(con: duckdb.DuckDBPyConnection, directory: Path) -> int:
    """Every event of `con`'s `events` under `directory`, partitioned by the UTC day
    of `recorded_at` and by `resource` (empty reads back as NULL); returns how many."""
    query = (
        f"SELECT * REPLACE ({partition_resource_sql('resource')} AS resource), "
        f"{partition_day_sql('recorded_at')} AS day FROM events"
    )
    return copy_partitioned(con, query, directory, source="events", origin="seq")


def _read_bodies(source: Path) -> Iterator[EventBody]:
    try:
        with source.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    yield decode_body(decode_line(line))
                except RecordError as exc:
                    raise ImportFileError(f"{source}:{number}: {exc}") from None
    except OSError as exc:
        raise ImportFileError(f"cannot read {source}: {exc.strerror}") from exc


def _events_in_order(con: duckdb.DuckDBPyConnection) -> Iterator[Event]:
    reader = con.sql(
        "SELECT seq, session_id, sender, kind, msg_type, tag, resource, status, "
        "epoch_us(recorded_at) AS recorded_at_us, mono_ns, payload, "
        "raw, parse_note, redaction_policy, redactions, prev_hash, hash "
        "FROM event_log ORDER BY seq"
    ).to_arrow_reader(_BATCH_ROWS)
    for batch in reader:
        for row in pa.Table.from_batches([batch]).to_pylist():
            yield Event(
                seq=row["seq"],
                body=EventBody(
                    session_id=row["session_id"],
                    sender=row["sender"],
                    kind=row["kind"],
                    msg_type=row["msg_type"],
                    tag=row["tag"],
                    resource=row["resource"],
                    status=row["status"],
                    stamp=Stamp(row["recorded_at_us"], row["mono_ns"]),
                    payload=row["payload"],
                    raw=row["raw"],
                    parse_note=row["parse_note"],
                    redaction_policy=row["redaction_policy"],
                    redactions=tuple(row["redactions"]),
                ),
                prev_hash=row["prev_hash"],
                hash=row["hash"],
            )
