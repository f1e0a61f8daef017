"""Exports of many stores read as one: identical schemas, global keys, every reader.

Two stores with different data (the second holds the first one's events and more,
so their seq values and transaction keys collide) export; every file of a table has
the same declared schema in both, and DuckDB, pyarrow and polars each read the two
exports as one dataset whose rows have distinct (store_id, seq) and
(store_id, transaction_key). pyarrow reads an export with Hive partitioning as is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from p3log.projections.export import MANIFEST, export_parquet
from p3log.projections.rows import TABLES
from p3log.projections.store import PROJECTION_VERSION
from p3log.protocol.dialect import DEFAULT_DIALECT, dialect_to_dict
from p3log.store.layout import open_layout
from p3log.store.transfer import import_jsonl

SESSIONS = Path(__file__).parents[2] / "fixtures" / "sessions"
NAMES = ("events", *(table.name for table in TABLES))
PARTITIONING = pa.schema([("day", pa.date32()), ("resource", pa.string())])


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("chain")
    first = ("signature.jsonl", "abort.jsonl", "decline.jsonl")
    stores = {"one": first, "two": (*first, "amend.jsonl", "busy_device.jsonl", "demo.jsonl")}
    out = []
    for name, sessions in stores.items():
        for session in sessions:
            import_jsonl(work / name, SESSIONS / session)
        export_parquet(work / name, work / f"{name}-out")
        out.append(work / f"{name}-out")
    return out[0], out[1]


def _store_ids(*exported: Path) -> set[str]:
    return {json.loads((out / MANIFEST).read_text())["store_id"] for out in exported}


@pytest.mark.parametrize("table", NAMES)
def test_two_stores_write_identical_schemas_for_a_table(
    exports: tuple[Path, Path], table: str
) -> None:
    files = [path for out in exports for path in sorted((out / table).rglob("*.parquet"))]
    assert {path.parents[2] for path in files} == {out / table for out in exports}
    arrow = [pq.read_schema(path) for path in files]
    parquet = [pq.ParquetFile(path).schema for path in files]  # required/optional too
    assert all(schema.equals(arrow[0], check_metadata=True) for schema in arrow)
    assert all(schema.equals(parquet[0]) for schema in parquet)
    assert arrow[0].names[0] == "store_id"


def _duckdb(exported: tuple[Path, ...], table: str) -> str:
    files = ", ".join(f"'{out / table}/**/*.parquet'" for out in exported)
    return (
        f"read_parquet([{files}], hive_partitioning = true, "
        "hive_types = {'day': DATE, 'resource': VARCHAR})"
    )


def _pyarrow(exported: tuple[Path, ...], table: str) -> pa.Table:
    parts = [
        ds.dataset(
            out / table, format="parquet", partitioning=ds.partitioning(PARTITIONING, flavor="hive")
        )
        for out in exported
    ]
    return ds.dataset(parts).to_table()


def _polars(exported: tuple[Path, ...], table: str) -> pl.DataFrame:
    return pl.read_parquet(
        [str(out / table / "**" / "*.parquet") for out in exported],
        hive_partitioning=True,
        hive_schema={"day": pl.Date, "resource": pl.String},
    )


def _keys(rows: list[tuple[object, object]]) -> None:
    assert len(rows) == len(set(rows))


@pytest.mark.parametrize("reader", ["duckdb", "pyarrow", "polars"])
def test_each_reader_reads_both_exports_as_one_with_global_keys(
    exports: tuple[Path, Path], reader: str
) -> None:
    one, two = exports
    counts = {
        table: [
            json.loads((out / MANIFEST).read_text())["tables"][table]["rows"] for out in exports
        ]
        for table in NAMES
    }
    for table, key in (("events", "seq"), ("transactions", "transaction_key")):
        if reader == "duckdb":
            rows = duckdb.sql(f"SELECT store_id, {key} FROM {_duckdb(exports, table)}").fetchall()
        elif reader == "pyarrow":
            read = _pyarrow(exports, table)
            rows = list(zip(read["store_id"].to_pylist(), read[key].to_pylist(), strict=True))
        else:
            frame = _polars(exports, table)
            rows = list(zip(frame["store_id"].to_list(), frame[key].to_list(), strict=True))
        assert len(rows) == sum(counts[table])
        assert len(rows) == len(set(rows)), f"(store_id, {key}) repeats in {table}"
        # ... while the key alone collides: the second store holds the first's events
        assert len({value for _, value in rows}) < len(rows)
        assert {store for store, _ in rows} == _store_ids(one, two)


@pytest.mark.parametrize("table", NAMES)
def test_pyarrow_reads_an_export_with_hive_partitioning(
    exports: tuple[Path, Path], table: str
) -> None:
    out = exports[1]
    rows = json.loads((out / MANIFEST).read_text())["tables"][table]["rows"]
    inferred = ds.dataset(out / table, format="parquet", partitioning="hive").to_table()
    assert inferred.num_rows == rows and {"day", "resource"} <= set(inferred.column_names)
    typed = ds.dataset(
        out / table, format="parquet", partitioning=ds.partitioning(PARTITIONING, flavor="hive")
    ).to_table()
    assert typed.schema.field("day").type == pa.date32()
    assert typed.num_rows == rows


def test_events_raw_is_kept_only_where_it_is_not_the_payload(exports: tuple[Path, Path]) -> None:
    relation = _duckdb(exports[1:], "events")
    repeated, kept = duckdb.sql(
        f"SELECT count(*) FILTER (raw = encode(payload)), count(raw) FROM {relation}"
    ).fetchall()[0]
    assert repeated == 0
    total = duckdb.sql(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    assert kept < total


def test_the_manifest_names_the_projection_version_and_dialect(
    exports: tuple[Path, Path],
) -> None:
    for out in exports:
        manifest = json.loads((out / MANIFEST).read_text())
        assert manifest["format"] == "p3log-parquet-export/2"
        assert manifest["projection_version"] == PROJECTION_VERSION
        assert manifest["dialect"] == dialect_to_dict(DEFAULT_DIALECT)
        canonical = orjson.dumps(manifest["dialect"], option=orjson.OPT_SORT_KEYS)
        assert manifest["dialect_sha256"] == hashlib.sha256(canonical).hexdigest()
        assert manifest["partitioning"]["in_files"] is False
        assert (
            manifest["store_id"]
            == open_layout(out.parent / out.name.removesuffix("-out"), create=False)[1].store_id
        )
