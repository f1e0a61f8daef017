"""`p3log export --format parquet`: events and projections as Hive-partitioned Parquet.

A store of every recorded session (plus copies of two of them a day and two days
later, so that there is more than one day) is exported; a fresh DuckDB that knows
nothing of p3log reads each table back from the Parquet files, and must find the
store's rows, and the same answers to an analyst's queries.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from p3log.cli import app
from p3log.projections.export import DAY_COLUMNS, EXPORT_FORMAT, MANIFEST, export_parquet
from p3log.projections.opening import open_store
from p3log.projections.rows import TABLES
from p3log.store import transfer
from p3log.store.log import EventLog
from p3log.store.transfer import (
    EXPORT_EVENTS_SCHEMA,
    NULL_PARTITION,
    export_schema,
    import_jsonl,
)
from p3log.store.verify import make_checkpoint

SESSIONS = Path(__file__).parents[2] / "fixtures" / "sessions"
NAMES = ("events", *(table.name for table in TABLES))
DAY_US = 86_400 * 1_000_000
# As docs/store.md says to read an export: Hive partitioning, with the partition
# columns' types given (a resource named "1" would otherwise come back as a number).
READ = (
    "read_parquet('{path}', hive_partitioning = true, "
    "hive_types = {{'day': DATE, 'resource': VARCHAR}})"
)

# An exported event holds `raw` only where it is not the payload's UTF-8 (as the
# journal does); docs/store.md says how to read the bytes the peer sent.
RAW_AS_SENT = "CASE WHEN sender = 'tap' THEN NULL ELSE coalesce(raw, encode(payload)) END AS raw"


def _shifted(source: Path, target: Path, days: int) -> Path:
    """A copy of a recorded session `days` later, under another session id."""
    with source.open() as lines, target.open("w") as out:
        for line in lines:
            record = json.loads(line)
            record["session_id"] += f"-{days}d"
            record["recorded_at_us"] += days * DAY_US
            out.write(json.dumps(record) + "\n")
    return target


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("export")
    root = work / "store"
    for path in sorted(SESSIONS.glob("*.jsonl")):
        import_jsonl(root, path)
    import_jsonl(root, _shifted(SESSIONS / "abort.jsonl", work / "abort+1.jsonl", 1))
    import_jsonl(root, _shifted(SESSIONS / "signature.jsonl", work / "signature+2.jsonl", 2))
    open_store(root).close()  # project once
    return root


@pytest.fixture(scope="module")
def exported(store: Path) -> Path:
    out = store.parent / "out"
    # In ranges of 50 rows (not 20,000), so that the store is copied in many ranges
    # and partitions hold files from more than one.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer, "EXPORT_BATCH_ROWS", 50)
        export_parquet(store, out)
    return out


@pytest.fixture
def con() -> Any:
    with duckdb.connect() as fresh:
        fresh.execute("SET TimeZone = 'UTC'")
        yield fresh


def _read(out: Path, table: str) -> str:
    return READ.format(path=out / table / "**" / "*.parquet")


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [
        (row[0], row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    ]


@pytest.mark.parametrize("table", NAMES)
def test_every_table_reads_back_as_the_store_has_it(
    store: Path, exported: Path, con: duckdb.DuckDBPyConnection, table: str
) -> None:
    source = open_store(store)
    try:
        columns = _columns(source, table)
        expected = source.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        source.close()
    names = ", ".join(RAW_AS_SENT if name == "raw" else name for name, _ in columns)
    relation = f"(SELECT {names} FROM {_read(exported, table)})"
    assert _columns(con, relation) == columns
    assert con.execute(f"SELECT * FROM {relation} ORDER BY ALL").fetchall() == expected
    assert expected  # every table has rows in these sessions


def test_the_files_are_partitioned_by_day_and_resource(exported: Path) -> None:
    pattern = re.compile(r"day=(\d{4}-\d{2}-\d{2})/resource=([^/]+)/[^/]+\.parquet")
    for table in NAMES:
        files = [
            path.relative_to(exported / table)
            for path in (exported / table).rglob("*")
            if path.is_file()
        ]
        assert files, table
        for path in files:
            assert pattern.fullmatch(path.as_posix()), path
    days = sorted(path.name for path in (exported / "events").iterdir())
    assert days == ["day=2026-11-27", "day=2026-11-28", "day=2026-11-29"]
    # A resource is percent-encoded; no resource is Hive's default partition (NULL).
    resources = {path.name for path in (exported / "events" / days[0]).iterdir()}
    assert resources == {"resource=devices%2FusbReader", f"resource={NULL_PARTITION}"}
    assert sorted(path.name for path in exported.iterdir()) == sorted([*NAMES, MANIFEST])
    # the ranges: several for the events, and a partition with files from two of them
    assert len({path.name for path in (exported / "events").rglob("*.parquet")}) > 5
    assert any(len(list(path.iterdir())) > 1 for path in (exported / "events").glob("*/*"))


def test_day_and_resource_come_back_as_documented(
    store: Path, exported: Path, con: duckdb.DuckDBPyConnection
) -> None:
    source = open_store(store)
    try:
        for table in TABLES:
            day = f"x.{DAY_COLUMNS[table.name]}" if table.name in DAY_COLUMNS else "e.recorded_at"
            resource = (
                "x.resource"
                if table.name == "transactions"
                else "CASE WHEN x.transaction_key IS NULL THEN e.resource ELSE t.resource END"
            )
            expected = source.execute(
                f"SELECT x.{table.origin}, CAST({day} AS DATE), {resource} "
                f"FROM {table.name} x JOIN events e ON e.seq = x.{table.origin} "
                "LEFT JOIN transactions t ON t.transaction_key = x.transaction_key ORDER BY ALL"
            ).fetchall()
            got = con.execute(
                f"SELECT {table.origin}, day, resource FROM {_read(exported, table.name)} "
                "ORDER BY ALL"
            ).fetchall()
            assert got == expected, table.name
    finally:
        source.close()
    findings = con.execute(
        f"SELECT count(*) FROM {_read(exported, 'protocol_findings')} WHERE resource IS NOT NULL"
    ).fetchall()
    assert findings[0][0] > 0


# An analyst's questions, asked of the store and of the export: on the export, the
# partition columns answer "which day" and "which reader" without a join.
STORE_QUERIES = {
    "outcomes per day": """
        SELECT CAST(requested_at AS DATE) AS day, outcome, count(*) AS n,
               sum(amount) AS amount, avg(duration_ms) AS duration
        FROM transactions GROUP BY ALL ORDER BY ALL""",
    "abort window durations per resource and day": """
        SELECT t.resource, CAST(w.opened_at AS DATE) AS day, count(*) AS windows,
               sum(w.duration_ms) AS total_ms, max(w.duration_ms) AS longest_ms
        FROM abort_windows w JOIN transactions t USING (transaction_key)
        GROUP BY ALL ORDER BY ALL""",
    "abort windows": """
        SELECT transaction_key, opened_at, closed_at, duration_ms FROM abort_windows
        ORDER BY ALL""",
}
EXPORT_QUERIES = {
    "outcomes per day": """
        SELECT day, outcome, count(*) AS n, sum(amount) AS amount, avg(duration_ms) AS duration
        FROM {transactions} GROUP BY ALL ORDER BY ALL""",
    "abort window durations per resource and day": """
        SELECT resource, day, count(*) AS windows, sum(duration_ms) AS total_ms,
               max(duration_ms) AS longest_ms
        FROM {abort_windows} GROUP BY ALL ORDER BY ALL""",
    "abort windows": """
        SELECT transaction_key, opened_at, closed_at, duration_ms FROM {abort_windows}
        ORDER BY ALL""",
}


@pytest.mark.parametrize("question", sorted(STORE_QUERIES))
def test_analysis_queries_give_the_same_answers(
    store: Path, exported: Path, con: duckdb.DuckDBPyConnection, question: str
) -> None:
    source = open_store(store)
    try:
        expected = source.execute(STORE_QUERIES[question]).fetchall()
    finally:
        source.close()
    tables = {name: _read(exported, name) for name in NAMES}
    got = con.execute(EXPORT_QUERIES[question].format(**tables)).fetchall()
    assert got == expected
    assert len(expected) >= 3  # several days and outcomes: not a vacuous match


def test_the_manifest_names_the_chain_head_and_the_row_counts(
    store: Path, exported: Path, con: duckdb.DuckDBPyConnection
) -> None:
    manifest = json.loads((exported / MANIFEST).read_text())
    checkpoint = make_checkpoint(store)
    assert manifest["format"] == EXPORT_FORMAT
    assert manifest["store_id"] == checkpoint.store_id
    assert (manifest["head_seq"], manifest["head_hash"]) == (checkpoint.count, checkpoint.head_hash)
    assert datetime.fromisoformat(manifest["exported_at"]).tzinfo == UTC
    assert list(manifest["tables"]) == list(NAMES)
    for name in NAMES:
        ((count,),) = con.execute(f"SELECT count(*) FROM {_read(exported, name)}").fetchall()
        assert manifest["tables"][name]["rows"] == count, name
    assert manifest["partitioning"]["columns"] == {"day": "DATE", "resource": "VARCHAR"}
    assert manifest["partitioning"]["null"] == NULL_PARTITION


@pytest.mark.parametrize("table", NAMES)
def test_polars_and_pyarrow_read_the_export_too(
    exported: Path, con: duckdb.DuckDBPyConnection, table: str
) -> None:
    expected = con.execute(
        f"SELECT count(*), count(resource) FROM {_read(exported, table)}"
    ).fetchall()[0]
    frame = pl.read_parquet(
        exported / table / "**" / "*.parquet",
        hive_partitioning=True,
        hive_schema={"day": pl.Date, "resource": pl.String},
    )
    assert (frame.height, frame.height - frame["resource"].null_count()) == expected
    partitioning = ds.partitioning(
        pa.schema([("day", pa.date32()), ("resource", pa.string())]), flavor="hive"
    )
    arrow = ds.dataset(exported / table, format="parquet", partitioning=partitioning).to_table()
    assert (arrow.num_rows, arrow.num_rows - arrow["resource"].null_count) == expected


def test_the_files_hold_the_declared_schema_and_the_path_the_partition_columns(
    exported: Path,
) -> None:
    """Each file has its table's declared schema (store_id first); `day` and `resource`
    are in the path only, so no reader finds `day` typed twice (a date in the file,
    text in the path)."""
    for name in NAMES:
        expected = (
            EXPORT_EVENTS_SCHEMA
            if name == "events"
            else export_schema(next(t for t in TABLES if t.name == name).arrow_schema)
        )
        for path in (exported / name).rglob("*.parquet"):
            schema = pq.read_schema(path)
            assert schema.equals(expected, check_metadata=True), path
            assert schema.names[0] == "store_id"
            assert not {"day", "resource"} & set(schema.names)


def test_an_empty_resource_reads_back_as_null(tmp_path: Path) -> None:
    line = {
        "session_id": "h",
        "sender": "client",
        "kind": "message",
        "resource": "",
        "recorded_at_us": 1_795_819_812_341_890,
        "mono_ns": 1,
        "payload": '{"type":"PING_REQUEST","tag":"t","resource":""}',
    }
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    import_jsonl(tmp_path / "store", tmp_path / "in.jsonl")
    export_parquet(tmp_path / "store", tmp_path / "out")
    (path,) = (tmp_path / "out" / "events").rglob("*.parquet")
    assert path.parent.name == f"resource={NULL_PARTITION}"
    rows = duckdb.sql(f"SELECT seq, resource FROM {_read(tmp_path / 'out', 'events')}").fetchall()
    assert rows == [(1, None)]


def test_an_empty_store_exports_empty_tables(tmp_path: Path) -> None:
    EventLog.open(tmp_path / "store").close()
    manifest = export_parquet(tmp_path / "store", tmp_path / "out")
    assert manifest.head_seq == 0 and manifest.head_hash == "0" * 64
    assert {name: table.rows for name, table in manifest.tables.items()} == dict.fromkeys(NAMES, 0)
    assert all((tmp_path / "out" / name).is_dir() for name in NAMES)


def test_a_store_being_recorded_exports_what_a_reader_sees(tmp_path: Path) -> None:
    root = tmp_path / "store"
    import_jsonl(root, SESSIONS / "abort.jsonl")
    with EventLog.open(root):  # a recorder holds the store: the export reads it live
        manifest = export_parquet(root, tmp_path / "out")
    source = open_store(root)
    try:
        names = ", ".join(name for name, _ in _columns(source, "transactions"))
        expected = source.execute(f"SELECT {names} FROM transactions ORDER BY ALL").fetchall()
        ((count,),) = source.execute("SELECT count(*) FROM events").fetchall()
    finally:
        source.close()
    assert manifest.head_seq == count
    got = duckdb.sql(
        f"SELECT {names} FROM {_read(tmp_path / 'out', 'transactions')} ORDER BY ALL"
    ).fetchall()
    assert got == expected


# --- the command ---------------------------------------------------------------------------


def p3log(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def _one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]


def test_the_command_writes_refuses_and_replaces(tmp_path: Path) -> None:
    root = tmp_path / "store"
    import_jsonl(root, SESSIONS / "decline.jsonl")
    out = tmp_path / "exports" / "today"  # parents are created
    export = ("export", "--store", root, "--format", "parquet", "--to", out)
    done = p3log(*export)
    assert done.exit_code == 0, done.stderr
    assert re.fullmatch(
        rf"exported \d+ events and \d+ projection rows to {out} \(Parquet by day and resource\)\n",
        done.stdout,
    )
    first = json.loads((out / MANIFEST).read_text())["exported_at"]

    _one_line_error(p3log(*export), "is not empty: choose a new directory, or --force")
    replaced = p3log(*export, "--force")
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads((out / MANIFEST).read_text())["exported_at"] > first
    assert sorted(path.name for path in out.parent.iterdir()) == ["today"]  # no leftovers

    (tmp_path / "file").write_text("keep me")
    _one_line_error(
        p3log("export", "--store", root, "--format", "parquet", "--to", tmp_path / "file"),
        "it exists and is not a directory",
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    _one_line_error(
        p3log(
            "export", "--store", root, "--format", "parquet", "--to", tmp_path / "notes", "--force"
        ),
        "not a p3log export: not replacing it",
    )
    assert (
        (tmp_path / "file").read_text() == (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "exports",
        "file",
        "notes",
        "store",
    ]


def test_jsonl_is_still_one_importable_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    import_jsonl(root, SESSIONS / "decline.jsonl")
    done = p3log("export", "--store", root, "--to", tmp_path / "x.jsonl")
    assert done.exit_code == 0, done.stderr
    # The fixture holds records only; an export adds its header and end line around them.
    records = (tmp_path / "x.jsonl").read_bytes().splitlines(keepends=True)[1:-1]
    assert b"".join(records) == (SESSIONS / "decline.jsonl").read_bytes()
