"""Reading a store while a recorder holds it: the live path equals the idle one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from p3log.projections.opening import open_store
from p3log.projections.rows import TABLES
from p3log.projections.snapshots import ProjectionSnapshots
from p3log.projections.store import ProjectionStore
from p3log.store.layout import StoreLayout
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
        assert log.pending_count  # journaled, not yet indexed: only the journal has them
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
