"""Moving events in and out of a store: JSONL (the journal's record format) and Parquet.

Import appends through the store's normal write path, so imported events are
redacted, sequenced and chained by the receiving store: seq and hashes in the file
are not trusted, they are recomputed. Exporting a store and importing the file into
an empty store reproduces the file byte for byte.
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


def import_jsonl(root: Path, source: Path) -> int:
    """Append every event of `source` to the store; returns how many.

    The whole file is checked before the first event is appended, so a bad line
    leaves the store unchanged.
    """
    bodies = list(_read_bodies(source))
    with EventLog.open(root) as log:
        for body in bodies:
            log.record_imported(body)
            if log.pending_count >= _BATCH_ROWS:
                log.flush()
    return len(bodies)


def export_store(root: Path, fmt: ExportFormat, target: Path) -> int:
    """Write every event, in seq order, to `target`; returns how many."""
    con = open_store(root)
    try:
        if fmt == "parquet":
            destination = sql_string(str(target))
            con.execute(
                f"COPY (SELECT * FROM events ORDER BY seq) TO {destination} (FORMAT PARQUET)"
            )
        else:
            with target.open("wb") as out:
                for event in _events_in_order(con):
                    out.write(encode_record(event))
        return int(query_scalar(con, "SELECT count(*) FROM events"))
    except (OSError, duckdb.IOException) as exc:
        raise StoreError(f"cannot write {target}: {exc}") from exc
    finally:
        con.close()


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
