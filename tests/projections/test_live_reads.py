"""Reading a store while a recorder holds it: the live path equals the idle one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from p3log.projections.opening import open_store, verify_store
from p3log.projections.rows import TABLES
from p3log.projections.snapshots import ProjectionSnapshots
from p3log.projections.store import ProjectionStore
from p3log.store.errors import StoreCorrupt
from p3log.store.index import indexed_head, sql_string
from p3log.store.layout import StoreLayout, writer_lock
from p3log.store.log import EventLog
from p3log.store.records import decode_body, decode_line
from p3log.store.segments import EventSegments, sealed_segments

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sessions"


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        t.name: con.execute(f"SELECT * FROM {t.name} ORDER BY ALL").fetchall() for t in TABLES
    }
    tables["events"] = con.execute("SELECT * FROM events ORDER BY seq").fetchall()
    return tables


def _record_fixture(log: EventLog, name: str) -> None:
    for line in (FIXTURES / name).read_bytes().splitlines():
        log.record_imported(decode_body(decode_line(line)))
    log.flush()


def test_a_live_reader_sees_segments_snapshot_and_tail_as_the_index_has_them(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    # Small thresholds, so that this store has sealed segments, a projection snapshot
    # behind the head, sessions open across it, and a journal tail.
    followers = [
        ProjectionStore(),
        EventSegments(root, seal_events=40),
        ProjectionSnapshots(root, every_events=100),
    ]
    with EventLog.open(root, followers=followers) as log:
        for name in ("demo.jsonl", "busy_device.jsonl", "signature.jsonl"):
            _record_fixture(log, name)
        for line in (FIXTURES / "abort.jsonl").read_bytes().splitlines()[:9]:  # mid-session
            log.record_imported(decode_body(decode_line(line)))
        assert indexed_head(log.index) < log.head[0]  # only the journal has the last ones
        live = open_store(root)
        try:
            seen_live = _tables(live)
        finally:
            live.close()
        head = log.head[0]
    segments = sealed_segments(root)
    snapshots = sorted((root / "segments").glob("projections-*"))
    assert segments and segments[-1].last_seq < head
    assert snapshots and int(snapshots[-1].name.split("-")[1]) < head

    idle = open_store(root)
    try:
        assert _tables(idle) == seen_live
        assert len(seen_live["events"]) == head
    finally:
        idle.close()


def test_a_live_reader_of_a_store_without_segments_folds_the_journal(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with EventLog.open(root) as log:
        _record_fixture(log, "abort.jsonl")
        live = open_store(root)
        try:
            outcomes = live.execute("SELECT outcome FROM transactions ORDER BY ALL").fetchall()
            events = live.execute("SELECT count(*) FROM events").fetchall()[0][0]
        finally:
            live.close()
        assert not (root / "segments").exists()
        assert events == log.head[0]
    assert outcomes == [("ABORTED",), ("APPROVED",)]


def test_a_torn_record_at_the_end_of_the_journal_is_left_for_the_next_reader(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    with EventLog.open(root) as log:
        _record_fixture(log, "simple.jsonl")
        segment = sorted(StoreLayout(root).journal_dir.glob("*.jsonl"))[-1]
        with segment.open("ab") as journal:  # a record being written as the reader opens
            journal.write(b'{"seq": 999, "session_id": "half')
        live = open_store(root)
        try:
            count = live.execute("SELECT count(*), max(seq) FROM events").fetchall()[0]
        finally:
            live.close()
        assert count == (log.head[0], log.head[0])
        with segment.open("r+b") as journal:  # leave the store as the recorder had it
            journal.truncate(segment.stat().st_size - len(b'{"seq": 999, "session_id": "half'))


def test_a_notebook_can_hold_two_connections_to_one_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with EventLog.open(root) as log:
        _record_fixture(log, "simple.jsonl")
    first = open_store(root)
    second = open_store(root)  # the index is held read-only by `first` in this process
    try:
        counts = [
            con.execute("SELECT count(*) FROM transactions").fetchall() for con in (first, second)
        ]
    finally:
        first.close()
        second.close()
    assert counts == [[(2,)], [(2,)]]


def _recorded_with_snapshots(root: Path) -> Path:
    followers = [
        ProjectionStore(),
        EventSegments(root, seal_events=40),
        ProjectionSnapshots(root, every_events=100),
    ]
    with EventLog.open(root, followers=followers) as log:
        for name in ("demo.jsonl", "busy_device.jsonl", "signature.jsonl", "abort.jsonl"):
            _record_fixture(log, name)
    assert sorted((root / "segments").glob("projections-*"))
    return root


def _latest_snapshot(root: Path) -> Path:
    return sorted((root / "segments").glob("projections-*"))[-1]


def test_verify_folds_every_snapshot_again_and_passes_an_untouched_one(tmp_path: Path) -> None:
    root = _recorded_with_snapshots(tmp_path / "store")
    assert verify_store(root).ok
    (root / "index.duckdb").unlink()  # folded from the journal instead
    assert verify_store(root).ok


def test_a_forged_snapshot_table_fails_verify(tmp_path: Path) -> None:
    root = _recorded_with_snapshots(tmp_path / "store")
    snapshot = _latest_snapshot(root)
    table = sql_string(str(snapshot / "transactions.parquet"))
    with duckdb.connect() as con:  # every outcome becomes an approval
        con.execute(
            f"COPY (SELECT * REPLACE ('APPROVED' AS outcome) FROM read_parquet({table})) "
            f"TO {sql_string(str(snapshot / 'forged.parquet'))} (FORMAT parquet)"
        )
    (snapshot / "forged.parquet").replace(snapshot / "transactions.parquet")
    report = verify_store(root)
    assert report.problem is not None, "verify passed a forged snapshot"
    assert report.problem.source == f"segments/{snapshot.name}"
    assert "transactions.parquet" in report.problem.reason


@pytest.mark.parametrize("snapshots", [True, False], ids=["after-snapshots", "no-snapshot"])
@pytest.mark.parametrize(
    "forgery",
    [
        "UPDATE transactions SET outcome = 'DECLINED' WHERE outcome = 'APPROVED'",
        "DELETE FROM protocol_findings",
        "UPDATE projection_meta SET projected_through = 0",
    ],
    ids=["outcome", "findings-deleted", "meta-through"],
)
def test_a_forged_index_projection_table_fails_verify(
    tmp_path: Path, forgery: str, snapshots: bool
) -> None:
    # Idle readers (`p3log transactions`, `show`, `findings`, `report`, `sql`) read the
    # index's projection tables as they are: verify must fold the events again for them.
    root = _recorded_with_snapshots(tmp_path / "store")
    if not snapshots:
        for snapshot in sorted((root / "segments").glob("projections-*")):
            shutil.rmtree(snapshot)
    assert verify_store(root).ok
    with duckdb.connect(str(root / "index.duckdb")) as con:
        assert con.execute(f"{forgery} RETURNING 1").fetchall()
    report = verify_store(root)
    assert report.problem is not None, "verify passed a forged projection table"
    assert report.problem.source == "index"


def test_a_snapshot_naming_another_chain_head_is_refused_by_readers_and_verify(
    tmp_path: Path,
) -> None:
    root = _recorded_with_snapshots(tmp_path / "store")
    snapshot = _latest_snapshot(root)
    meta = orjson.loads((snapshot / "meta.json").read_bytes())
    (snapshot / "meta.json").write_bytes(orjson.dumps({**meta, "head_hash": "0" * 64}))
    report = verify_store(root)
    assert report.problem is not None and report.problem.source == f"segments/{snapshot.name}"
    with writer_lock(StoreLayout(root)), pytest.raises(StoreCorrupt, match="p3log verify"):
        open_store(root)  # the live path: another holder of the writer lock


def test_a_snapshot_published_after_the_reader_read_the_journal_is_passed_over(
    tmp_path: Path,
) -> None:
    """The indexer publishes snapshots while a live reader opens: one may cover seqs
    beyond the journal tail the reader copied. The reader cannot check it against its
    events, so it uses an older one (or folds the events) and answers as the index."""
    root = tmp_path / "store"
    followers = [
        ProjectionStore(),
        EventSegments(root, seal_events=40),
        ProjectionSnapshots(root, every_events=100),
    ]
    with EventLog.open(root, followers=followers) as log:
        for name in ("demo.jsonl", "busy_device.jsonl"):
            _record_fixture(log, name)
        head = log.head[0]
    later = tmp_path / "later"  # the same chain, recorded on: what the indexer saw next
    shutil.copytree(root, later)
    with EventLog.open(
        later, followers=[ProjectionStore(), ProjectionSnapshots(later, 100)]
    ) as log:
        for name in ("signature.jsonl", "abort.jsonl", "demo.jsonl", "busy_device.jsonl"):
            _record_fixture(log, name)
    future = _latest_snapshot(later)
    assert int(future.name.split("-")[1]) > head
    idle = open_store(root)
    try:
        expected = _tables(idle)
    finally:
        idle.close()
    shutil.copytree(future, root / "segments" / future.name)
    with writer_lock(StoreLayout(root)):  # read live, as while a tap records
        live = open_store(root)
        try:
            assert _tables(live) == expected
        finally:
            live.close()
