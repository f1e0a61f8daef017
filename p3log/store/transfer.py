"""Moving events in and out of a store: JSONL (the journal's record format) and Parquet.

Import redacts, sequences and chains the events as the receiving store's own: seq
and hashes in the file are not trusted, they are recomputed. An import is all or
nothing, and refuses a file whose events the store already holds. Exporting a store
and importing the file into an empty store reproduces the file byte for byte.

The Parquet export is Hive-partitioned by day and resource, for engines that read a
directory of Parquet files (docs/store.md, "Export"). This module writes the events'
part of it and the partitioned files; `p3log.projections.export` writes the whole
export, projections included.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import duckdb
import orjson
import pyarrow as pa

from p3log.store.bulk import ImportPlan, append_in_parallel
from p3log.store.errors import ImportFileError, StoreError
from p3log.store.event import Event, EventBody, Stamp
from p3log.store.index import (
    ARROW_TYPES,
    EVENT_SCHEMA,
    journal_relation_sql,
    query_one,
    sql_string,
)
from p3log.store.journal import fsync_path
from p3log.store.log import EventLog
from p3log.store.parquet import write_partitioned
from p3log.store.read import open_store
from p3log.store.records import RecordError, decode_body, decode_line, encode_record
from p3log.store.segments import STORE_ID, STORE_ID_FIELD

ExportFormat = Literal["jsonl", "parquet"]
_BATCH_ROWS = 10_000

# The JSONL export's first and last lines (docs/store.md, "Export"); no record has
# these keys. The end line holds the record count and the SHA-256 of every byte
# before it, header included.
_HEADER_KEY = "p3log_export"
_END_KEY = "p3log_export_end"
_EXPORT_HEADER = orjson.dumps({_HEADER_KEY: 1}, option=orjson.OPT_APPEND_NEWLINE)

# The Parquet export's partitioning: `day=YYYY-MM-DD/resource=<value>/`, the value
# percent-encoded. The partition columns are in the path only, never in the files
# (where a reader would find `day` typed twice, as a date and as the path's text).
# A NULL resource (and an empty one, which Spark refuses as a directory name) is
# Hive's default partition, which DuckDB, Spark, Trino, pyarrow and polars read
# back as NULL.
PARTITION_TYPES = {"day": "DATE", "resource": "VARCHAR"}
PARTITIONING = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in PARTITION_TYPES.items()])
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# DuckDB keeps every open partition's rows in memory until its COPY ends, so one COPY
# of a year of events needs about as much memory as the events (1 GB for a million).
# The export copies this many rows at a time instead, which stays well inside the
# index's memory limit (a sealed segment holds as many events).
EXPORT_BATCH_ROWS = 20_000


def import_jsonl(root: Path, source: Path, *, workers: int | None = None) -> int:
    """Append every event of `source` to the store; returns how many.

    All or nothing: the events are journaled as one new segment that appears whole
    (`EventLog.append_all_or_nothing`), so a bad line, an export cut short, a file
    whose events the store already holds, or a kill at any moment leaves the store
    as it was. So does a full disk: the write that fails is one plain error.

    A large file is redacted by `workers` processes besides this one (None: as many
    as there are cores; 0: none), with the same result (`bulk.py`).
    """
    plan = ImportPlan(workers)
    for number, body in _read_bodies(source):  # a bad file is refused before the store opens
        plan.add(number, body)
    with EventLog.open(root) as log:
        try:
            with log.append_all_or_nothing() as batch:
                if plan.workers:
                    append_in_parallel(log, batch, source, plan)
                else:
                    for _, body in _read_bodies(source):
                        batch.append(log.imported_body(body))
                batch.segment.flush()
                _refuse_events_already_stored(log, batch.segment.dir, source, batch.count)
        except OSError as exc:
            raise StoreError(
                f"cannot write the journal of {root}: {exc.strerror or exc}; nothing was imported"
            ) from exc
        return batch.count


def export_store(root: Path, fmt: Literal["jsonl"], target: Path) -> int:
    """Write every event, in seq order, to `target` as JSONL; returns how many.

    The file is a header line, the records, and an end line with their count and
    the SHA-256 of every byte before it, so that an import can tell a whole export
    from one cut short. It is written under a hidden name beside `target` and
    renamed into place once synced: `target` is never half an export.

    (The Parquet export holds the projections too, so it lives a layer up:
    `p3log.projections.export.export_parquet`.)
    """
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    con = open_store(root)
    try:
        digest = hashlib.sha256()
        count = 0
        with partial.open("wb") as out:

            def write(line: bytes) -> None:
                digest.update(line)
                out.write(line)

            write(_EXPORT_HEADER)
            for event in _events_in_order(con):
                write(encode_record(event))
                count += 1
            out.write(_end_line(count, digest.hexdigest()))
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)
        fsync_path(target.parent)
        return count
    except (OSError, duckdb.IOException) as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot write {target}: {exc}") from exc
    finally:
        con.close()


def partition_day_sql(column: str) -> str:
    """The UTC date of a TIMESTAMPTZ column, whatever the session's time zone."""
    return f"CAST(timezone('UTC', {column}) AS DATE)"


def partition_resource_sql(column: str) -> str:
    return f"nullif({column}, '')"


def export_schema(columns: pa.Schema) -> pa.Schema:
    """The declared schema of an exported table's files: `store_id`, then the table's
    columns but the partition columns (which are in the path)."""
    return pa.schema([STORE_ID_FIELD, *(f for f in columns if f.name not in PARTITION_TYPES)])


# An exported event: as a sealed segment holds it (`raw` only where it is not the
# payload's UTF-8, as in the journal), `resource` in the path.
EXPORT_EVENTS_SCHEMA = export_schema(EVENT_SCHEMA)


def copy_partitioned(
    con: duckdb.DuckDBPyConnection,
    query: str,
    directory: Path,
    *,
    source: str,
    origin: str,
    schema: pa.Schema,
    batch_rows: int | None = None,
) -> int:
    """Write the rows of `query`, whose columns include `day` and `resource`, under
    `directory` as Hive-partitioned Parquet whose files have the declared `schema`;
    returns how many rows.

    `query` yields one row per row of the table `source`, with its column `origin`
    (a seq). The rows are copied in ranges of `origin` of about `batch_rows` rows
    (`EXPORT_BATCH_ROWS`), each range into files of its own, named
    `part-<range>-<n>.parquet`.
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
        rows = con.sql(f"SELECT * FROM ({query}) WHERE {origin} >= {start}{end}").to_arrow_table()
        written += write_partitioned(rows, directory, schema, PARTITIONING, f"part-{number:06d}")
    return written


def export_events_parquet(con: duckdb.DuckDBPyConnection, directory: Path, store_id: str) -> int:
    """Every event of `con`'s `event_log` under `directory` (`EXPORT_EVENTS_SCHEMA`,
    each row with `store_id`), partitioned by the UTC day of `recorded_at` and by
    `resource` (empty reads back as NULL); returns how many."""
    query = (
        f"SELECT {sql_string(store_id)} AS {STORE_ID}, "
        f"* REPLACE ({partition_resource_sql('resource')} AS resource), "
        f"{partition_day_sql('recorded_at')} AS day FROM event_log"
    )
    return copy_partitioned(
        con, query, directory, source="event_log", origin="seq", schema=EXPORT_EVENTS_SCHEMA
    )


def _end_line(count: int, sha256: str) -> bytes:
    return orjson.dumps(
        {_END_KEY: {"events": count, "sha256": sha256}}, option=orjson.OPT_APPEND_NEWLINE
    )


def _read_bodies(source: Path) -> Iterator[tuple[int, EventBody]]:
    """The events of an export (header, records, end line: all checked) or of a file
    of records without a header (hand-written, or exported before p3log wrote one)."""
    try:
        with source.open("rb") as lines:
            yield from _ExportReader(source).bodies(lines)
    except OSError as exc:
        raise ImportFileError(f"cannot read {source}: {exc.strerror}") from exc


class _ExportReader:
    def __init__(self, source: Path) -> None:
        self._source = source
        self._digest = hashlib.sha256()  # every byte before the line being read
        self._headed = False
        self._count = 0

    def bodies(self, lines: Iterable[bytes]) -> Iterator[tuple[int, EventBody]]:
        """Each event with the number of its line (from 1)."""
        ended = False
        for number, line in enumerate(lines, start=1):
            if ended:
                raise self._error(number, "a line after the export's end line")
            if not line.strip():
                self._digest.update(line)
                continue
            obj = self._object(number, line)
            if number == 1 and _HEADER_KEY in obj:
                self._headed = True
            elif _END_KEY in obj and self._headed:
                self._check_end(number, obj[_END_KEY])
                ended = True
            elif _HEADER_KEY in obj or _END_KEY in obj:
                raise self._error(number, "an export's header or end line out of place")
            else:
                try:
                    body = decode_body(obj)
                except RecordError as exc:
                    raise self._error(number, str(exc)) from None
                yield number, body
                self._count += 1
            self._digest.update(line)
        if self._headed and not ended:
            raise ImportFileError(
                f"{self._source}: the export has no end line after {self._count} events: "
                "it was cut short; nothing was imported"
            )

    def _object(self, number: int, line: bytes) -> dict[str, Any]:
        try:
            return decode_line(line)
        except RecordError as exc:
            raise self._error(number, str(exc)) from None

    def _check_end(self, number: int, end: object) -> None:
        expected = {"events": self._count, "sha256": self._digest.hexdigest()}
        if not isinstance(end, dict) or end.get("events") != self._count:
            got = end.get("events") if isinstance(end, dict) else end
            raise self._error(
                number, f"the end line counts {got!r} events, the export holds {self._count}"
            )
        if end != expected:
            raise self._error(number, "the export's content does not match its end line (SHA-256)")

    def _error(self, number: int, problem: str) -> ImportFileError:
        return ImportFileError(f"{self._source}:{number}: {problem}; nothing was imported")


def _refuse_events_already_stored(log: EventLog, incoming: Path, source: Path, count: int) -> None:
    """Refuse a file whose events the store already holds (imported before): the same
    session, sender, kind, both timestamps, payload and bytes."""
    batch = journal_relation_sql(incoming)
    if batch is None:
        return
    found, first = query_one(
        log.index,
        f"""
        SELECT count(DISTINCT f.seq), min(e.seq) FROM ({batch}) f JOIN event_log e
          ON e.session_id = f.session_id AND e.sender = f.sender AND e.kind = f.kind
         AND e.mono_ns = f.mono_ns AND epoch_us(e.recorded_at) = f.recorded_at_us
         AND e.payload IS NOT DISTINCT FROM f.payload
         AND e.raw IS NOT DISTINCT FROM from_base64(f.raw_b64)
        """,
    ) or (0, None)
    if found:
        raise ImportFileError(
            f"{source}: {found} of its {count} events are already in the store (the first "
            f"as seq {first}): it was imported before; nothing was imported"
        )


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
