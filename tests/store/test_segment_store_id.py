"""Sealed segments name their store: `store_id` in every row, the fold in the metadata.

(store_id, seq) is a key across stores only if a store's segments are its own: a
segment copied from another store is damage, which verify reports and a live reader
refuses, even when its events are the same (two stores importing one file hold the
same chain). Segments sealed before store_id still read and verify.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from p3log.projections.opening import open_store
from p3log.projections.rows import TABLES
from p3log.projections.snapshots import ProjectionSnapshots
from p3log.projections.store import PROJECTION_VERSION, ProjectionStore, fold_metadata
from p3log.store.errors import StoreCorrupt
from p3log.store.index import sql_string
from p3log.store.layout import StoreLayout, open_layout, writer_lock
from p3log.store.log import EventLog
from p3log.store.parquet import (
    META_DIALECT_SHA256,
    META_PROJECTION_VERSION,
    META_STORE_ID,
)
from p3log.store.records import decode_body, decode_line
from p3log.store.segments import SEGMENT_SCHEMA, EventSegments, sealed_segments
from p3log.store.verify import verify_store

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sessions"
SEAL = 20


def _recorded(root: Path, *names: str) -> Path:
    followers = [
        ProjectionStore(),
        EventSegments(root, seal_events=SEAL, describe=fold_metadata),
        ProjectionSnapshots(root, every_events=100),
    ]
    with EventLog.open(root, followers=followers) as log:
        for name in names:
            for line in (FIXTURES / name).read_bytes().splitlines():
                log.record_imported(decode_body(decode_line(line)))
            log.flush()
    assert len(sealed_segments(root)) >= 2
    return root


def _store_id(root: Path) -> str:
    return open_layout(root, create=False)[1].store_id


def _events(root: Path) -> list[tuple[object, ...]]:
    con = open_store(root)
    try:
        return con.execute("SELECT * FROM events ORDER BY seq").fetchall()
    finally:
        con.close()


def _live_events(root: Path) -> list[tuple[object, ...]]:
    with writer_lock(StoreLayout(root)):  # another holder of the lock: the live path
        return _events(root)


def test_every_segment_row_names_its_store_and_the_schema_is_declared(tmp_path: Path) -> None:
    one = _recorded(tmp_path / "one", "demo.jsonl", "busy_device.jsonl")
    other = _recorded(tmp_path / "other", "signature.jsonl", "abort.jsonl", "decline.jsonl")
    schemas = []
    for root in (one, other):
        for segment in sealed_segments(root):
            schema = pq.read_schema(segment.path)
            assert schema.remove_metadata().equals(SEGMENT_SCHEMA)
            metadata = {key.decode(): value.decode() for key, value in schema.metadata.items()}
            assert metadata[META_STORE_ID] == _store_id(root)
            assert metadata[META_PROJECTION_VERSION] == str(PROJECTION_VERSION)
            assert len(metadata[META_DIALECT_SHA256]) == 64
            rows = duckdb.sql(
                f"SELECT DISTINCT store_id FROM read_parquet({sql_string(str(segment.path))})"
            ).fetchall()
            assert rows == [(_store_id(root),)]
            schemas.append(pq.ParquetFile(segment.path).schema)
    # the Parquet schema (required/optional included) is the same whatever the rows
    assert all(schema.equals(schemas[0]) for schema in schemas)


def test_snapshot_files_have_the_declared_schema_and_name_the_fold(tmp_path: Path) -> None:
    root = _recorded(tmp_path / "store", "demo.jsonl", "busy_device.jsonl", "signature.jsonl")
    (snapshot,) = sorted((root / "segments").glob("projections-*"))[-1:]
    for table in TABLES:
        schema = pq.read_schema(snapshot / f"{table.name}.parquet")
        assert schema.remove_metadata().equals(table.arrow_schema), table.name
        assert schema.metadata[META_STORE_ID.encode()] == _store_id(root).encode()
        assert schema.metadata[META_PROJECTION_VERSION.encode()] == str(PROJECTION_VERSION).encode()


def test_a_segment_copied_from_another_store_is_reported_and_refused(tmp_path: Path) -> None:
    # Both stores import the same events: their chains, and segments' events, are equal.
    mine = _recorded(tmp_path / "mine", "demo.jsonl", "busy_device.jsonl")
    theirs = _recorded(tmp_path / "theirs", "demo.jsonl", "busy_device.jsonl")
    assert verify_store(mine).ok
    copied = sealed_segments(mine)[1].path
    shutil.copyfile(theirs / "segments" / copied.name, copied)
    report = verify_store(mine)
    assert report.problem is not None
    assert report.problem.source == copied.name
    assert f"store {_store_id(theirs)}'s" in report.problem.reason
    assert "copied" in report.problem.reason
    with pytest.raises(StoreCorrupt, match="copied"):
        _live_events(mine)


def test_a_segment_sealed_before_store_id_still_verifies_and_reads(tmp_path: Path) -> None:
    root = _recorded(tmp_path / "store", "demo.jsonl", "busy_device.jsonl")
    expected = _events(root)
    old = sealed_segments(root)[0].path
    # As p3log sealed it before store_id: DuckDB's COPY of event_log's columns.
    rewritten = tmp_path / "old.parquet"
    duckdb.execute(
        f"COPY (SELECT * EXCLUDE (store_id) FROM read_parquet({sql_string(str(old))})) "
        f"TO {sql_string(str(rewritten))} (FORMAT parquet, COMPRESSION zstd)"
    )
    shutil.move(rewritten, old)
    assert "store_id" not in pq.read_schema(old).names
    assert "store_id" in pq.read_schema(sealed_segments(root)[1].path).names  # mixed formats
    assert verify_store(root).ok
    assert _live_events(root) == expected


def test_a_segment_of_another_format_is_still_reported(tmp_path: Path) -> None:
    root = _recorded(tmp_path / "store", "demo.jsonl", "busy_device.jsonl")
    segment = sealed_segments(root)[0].path
    rewritten = tmp_path / "renamed.parquet"
    duckdb.execute(
        f"COPY (SELECT * RENAME (store_id AS shop) FROM read_parquet({sql_string(str(segment))})) "
        f"TO {sql_string(str(rewritten))} (FORMAT parquet)"
    )
    shutil.move(rewritten, segment)
    report = verify_store(root)
    assert report.problem is not None and report.problem.source == segment.name
    assert "event columns" in report.problem.reason
