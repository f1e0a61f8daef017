"""`p3log export --format parquet`: the events and every projection, for other engines.

The export is a directory any engine that reads Hive-partitioned Parquet can query
(DuckDB, also over object storage; Spark; Trino; pyarrow; polars):

    OUT/manifest.json
    OUT/events/day=YYYY-MM-DD/resource=<value>/part-<range>-<n>.parquet
    OUT/<table>/day=YYYY-MM-DD/resource=<value>/part-<range>-<n>.parquet   each of TABLES

`day` is the UTC date of the row's time (`DAY_COLUMNS`; tables without a time of
their own take the `recorded_at` of the event at their origin seq), `resource` the
transaction's resource (rows of no transaction: the resource of their origin event).
Both are in the path only (read the export with Hive partitioning, typed
`day DATE, resource VARCHAR`). Every file has its table's declared schema
(`export_schema`: `store_id` first, then the table's columns), the same in every
store whatever its data, so exports of many stores read as one dataset with the
global keys (store_id, seq) and (store_id, transaction_key). The manifest names the
store, its chain head, and how it folded (projection version and dialect).

The rows come from one connection, so events and projections are one consistent
state of the store, the one `manifest.json` names by its head seq and hash.
Everything is written into a temporary directory beside OUT and renamed into place:
OUT is never a half-written export.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs
import duckdb

from p3log.projections.opening import open_projected
from p3log.projections.rows import TABLES, Table
from p3log.projections.store import fold_metadata
from p3log.store.errors import StoreError
from p3log.store.index import query_one, sql_string
from p3log.store.layout import open_layout
from p3log.store.parquet import META_DIALECT, META_DIALECT_SHA256, META_PROJECTION_VERSION
from p3log.store.segments import STORE_ID
from p3log.store.transfer import (
    NULL_PARTITION,
    PARTITION_TYPES,
    copy_partitioned,
    export_events_parquet,
    export_schema,
    partition_day_sql,
    partition_resource_sql,
)

# /2: store_id in every row, declared schemas, partition columns in the path only,
# events.raw only where it is not the payload's UTF-8, the fold in the manifest.
EXPORT_FORMAT = "p3log-parquet-export/2"
_EARLIER_FORMATS = ("p3log-parquet-export/1",)  # replaced by --force like this one
MANIFEST = "manifest.json"
# The column whose UTC date partitions a table's rows; a table not named here is
# partitioned by the `recorded_at` of the event at its origin seq.
DAY_COLUMNS = {
    "transactions": "requested_at",
    "transaction_states": "entered_at",
    "abort_windows": "opened_at",
    "action_waits": "asked_at",
    "aborts": "requested_at",
    "latencies": "requested_at",
}
_GENESIS_HASH = "0" * 64


class ExportError(StoreError):
    """The export's target cannot be used."""


def _version() -> str:
    try:
        return version("p3log")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


@attrs.frozen
class ExportedTable:
    rows: int
    day: str  # where the `day` partition comes from
    resource: str  # where the `resource` partition comes from


@attrs.frozen
class ExportManifest:
    """`manifest.json`: what the export holds, the chain head it was taken at
    (compare with `p3log checkpoint`: `head_seq` is its `count`), and how the store
    folded its projections (a recompute folds the same way, or knows it differs)."""

    store_id: str
    exported_at: str  # ISO 8601, UTC
    head_seq: int
    head_hash: str
    projection_version: int
    dialect: dict[str, Any]
    dialect_sha256: str  # of the dialect's canonical JSON: equal hashes, equal dialects
    tables: dict[str, ExportedTable]
    partitioning: dict[str, Any]
    format: str = EXPORT_FORMAT
    p3log_version: str = attrs.field(factory=_version)

    @property
    def projection_rows(self) -> int:
        return sum(table.rows for name, table in self.tables.items() if name != "events")

    def to_json(self) -> str:
        data = attrs.asdict(self)
        order = (
            "format",
            "p3log_version",
            "store_id",
            "exported_at",
            "head_seq",
            "head_hash",
            "projection_version",
            "dialect_sha256",
            "dialect",
        )
        ordered = {key: data[key] for key in order} | data
        return json.dumps(ordered, indent=2) + "\n"


def export_parquet(root: Path, target: Path, *, replace: bool = False) -> ExportManifest:
    """Export the store at `root` into the directory `target` (see the module's doc).

    `target` must not exist or be an empty directory; with `replace`, it may also be
    an earlier export (a directory with this format's manifest), which is replaced.
    """
    _check_target(target, replace=replace)
    _, meta = open_layout(root, create=False)
    work = target.parent / f".{target.name}.export-{secrets.token_hex(4)}"
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        con = open_projected(root)
        try:
            manifest = _write(con, work, meta.store_id)
        finally:
            con.close()
        (work / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _move_into_place(work, target, replace=replace)
    except (OSError, duckdb.Error) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot write {target}: {reason}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _write(con: duckdb.DuckDBPyConnection, work: Path, store_id: str) -> ExportManifest:
    head = query_one(
        con, f"SELECT count(*), coalesce(arg_max(hash, seq), '{_GENESIS_HASH}') FROM events"
    )
    assert head is not None
    tables = {
        "events": ExportedTable(
            rows=export_events_parquet(con, work / "events", store_id),
            day="recorded_at",
            resource="resource",
        )
    }
    for table in TABLES:
        day = DAY_COLUMNS.get(table.name)
        tables[table.name] = ExportedTable(
            rows=copy_partitioned(
                con,
                _table_query(table, day, store_id),
                work / table.name,
                source=table.name,
                origin=table.origin,
                schema=export_schema(table.arrow_schema),
            ),
            day=day or f"events.recorded_at at {table.origin}",
            resource=(
                "resource"
                if table.name == "transactions"
                else f"transactions.resource by transaction_key, else events.resource at "
                f"{table.origin}"
            ),
        )
    fold = fold_metadata(con)
    return ExportManifest(
        store_id=store_id,
        exported_at=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        head_seq=int(head[0]),
        head_hash=str(head[1]),
        projection_version=int(fold[META_PROJECTION_VERSION]),
        dialect=json.loads(fold[META_DIALECT]),
        dialect_sha256=fold[META_DIALECT_SHA256],
        tables=tables,
        partitioning={
            "style": "hive",
            "columns": PARTITION_TYPES,
            "null": NULL_PARTITION,
            "in_files": False,
        },
    )


def _table_query(table: Table, day_column: str | None, store_id: str) -> str:
    """The table's rows with `store_id`, `day` and `resource` (see the module's doc)."""
    day = partition_day_sql(f"x.{day_column}" if day_column else "e.recorded_at")
    store = f"{sql_string(store_id)} AS {STORE_ID}"
    if table.name == "transactions":  # its own resource is the partition
        return (
            f"SELECT {store}, x.* REPLACE ({partition_resource_sql('x.resource')} AS resource), "
            f"{day} AS day FROM transactions x"
            + ("" if day_column else f" LEFT JOIN events e ON e.seq = x.{table.origin}")
        )
    resource = partition_resource_sql(
        "CASE WHEN x.transaction_key IS NULL THEN e.resource ELSE t.resource END"
    )
    return (
        f"SELECT {store}, x.*, {day} AS day, {resource} AS resource FROM {table.name} x "
        f"LEFT JOIN events e ON e.seq = x.{table.origin} "
        "LEFT JOIN transactions t ON t.transaction_key = x.transaction_key"
    )


def _check_target(target: Path, *, replace: bool) -> None:
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        raise ExportError(f"cannot export to {target}: it exists and is not a directory")
    if not any(target.iterdir()):
        return
    if not replace:
        raise ExportError(
            f"{target} is not empty: choose a new directory, "
            "or --force to replace an earlier export there"
        )
    if not _is_export(target):
        raise ExportError(f"{target} is not empty and not a p3log export: not replacing it")


def _is_export(directory: Path) -> bool:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") in (EXPORT_FORMAT, *_EARLIER_FORMATS)


def _move_into_place(work: Path, target: Path, *, replace: bool) -> None:
    """Rename `work` to `target`; with `replace`, an earlier export there is replaced."""
    try:
        work.rename(target)  # atomic; replaces an empty directory
        return
    except OSError:
        if not (replace and _is_export(target)):
            raise
    old = target.parent / f".{target.name}.replaced-{time.time_ns()}"
    target.rename(old)
    try:
        work.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
