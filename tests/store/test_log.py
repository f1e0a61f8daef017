"""The write path: seq, chain, journal first, index in batches, recovery on open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from p3log.store.errors import StoreBusy, StoreCorrupt
from p3log.store.event import GENESIS_HASH, Stamp
from p3log.store.index import connect, indexed_head
from p3log.store.journal import open_journal, segment_paths
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.verify import verify_store
from tests.conftest import fill_store, message_bytes


def test_seq_is_gapless_and_each_event_chains_to_the_previous(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "s") as log:
        events = [
            log.record_message("s1", "client", message_bytes("A_REQUEST", str(n))) for n in range(5)
        ]
    assert [event.seq for event in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(events))


def test_an_event_is_in_the_journal_when_record_returns(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "s")
    try:
        event = log.record_message("s1", "client", message_bytes("A_REQUEST", "t"))
        (segment,) = segment_paths(tmp_path / "s" / "journal")
        assert json.loads(segment.read_bytes())["hash"] == event.hash
        assert indexed_head(log.index) == 0  # not in DuckDB yet: the index follows later
    finally:
        log.close()


def test_events_reach_the_index_on_flush_with_every_contract_column(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "s") as log:
        log.record_message(
            "s1", "client", message_bytes("X_REQUEST", "t1", resource="devices/r"), Stamp(5, 7)
        )
        assert log.flush() == 1
        row = log.index.execute(
            "SELECT seq, session_id, sender, kind, msg_type, tag, resource, status, "
            "epoch_us(recorded_at), mono_ns, payload->>'$.type', prev_hash = ?, hash "
            "FROM events",
            [GENESIS_HASH],
        ).fetchall()[0]
    assert row is not None
    assert row[:12] == (
        1,
        "s1",
        "client",
        "message",
        "X_REQUEST",
        "t1",
        "devices/r",
        None,
        5,
        7,
        "X_REQUEST",
        True,
    )


def test_reopening_continues_the_same_chain(tmp_path: Path) -> None:
    fill_store(tmp_path / "s", 3)
    with EventLog.open(tmp_path / "s") as log:
        head_seq, head_hash = log.head
        event = log.record_message("s2", "client", message_bytes("A_REQUEST", "x"))
    assert (head_seq, event.seq, event.prev_hash) == (3, 4, head_hash)
    assert verify_store(tmp_path / "s").ok


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "s"), pytest.raises(StoreBusy, match=r"pid \d+"):
        EventLog.open(tmp_path / "s")


def test_a_writer_refuses_an_index_a_reader_holds_naming_the_reader(tmp_path: Path) -> None:
    fill_store(tmp_path / "s", 1)
    hold = (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print('open', flush=True); time.sleep(60)"
    )
    index = str(tmp_path / "s" / "index.duckdb")
    reader = subprocess.Popen(
        [sys.executable, "-c", hold, index], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "open\n"
        with pytest.raises(StoreBusy, match=rf"open in another process \(PID {reader.pid}\)"):
            EventLog.open(tmp_path / "s")
    finally:
        reader.kill()
        reader.wait()


def test_journaled_events_missing_from_the_index_are_ingested_once_on_open(
    tmp_path: Path,
) -> None:
    root = tmp_path / "s"
    with EventLog.open(root) as log:
        for n in range(4):
            log.record_message("s1", "client", message_bytes("A_REQUEST", str(n)))
    with EventLog.open(root, index=False) as tap:  # as a tap whose indexer was killed
        for n in range(4, 10):
            tap.record_message("s1", "client", message_bytes("A_REQUEST", str(n)))

    for _ in range(2):  # a second open must not ingest them again
        with EventLog.open(root) as reopened:
            seqs = [
                row[0]
                for row in reopened.index.execute("SELECT seq FROM events ORDER BY 1").fetchall()
            ]
        assert seqs == list(range(1, 11))
    assert verify_store(root).ok


def test_a_torn_last_record_is_set_aside_and_the_store_still_opens(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fill_store(root, 5)
    (segment,) = segment_paths(root / "journal")
    with segment.open("ab") as journal:
        journal.write(b'{"seq":6,"session_id":"s1","sen')  # a write cut short by a kill

    with EventLog.open(root) as log:
        assert log.head[0] == 5
        event = log.record_message("s1", "client", message_bytes("A_REQUEST", "after"))
    assert event.seq == 6
    (torn,) = (root / "journal" / "torn").iterdir()
    assert torn.read_bytes() == b'{"seq":6,"session_id":"s1","sen'
    assert verify_store(root).ok


def test_an_index_ahead_of_the_journal_is_refused_not_trusted(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fill_store(root, 3)
    (segment,) = segment_paths(root / "journal")
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:2]))
    with pytest.raises(StoreCorrupt, match="index holds events up to seq 3"):
        EventLog.open(root)


def test_segments_rotate_and_reopen_reads_across_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("p3log.store.journal.SEGMENT_BYTES", 300)
    root = tmp_path / "s"
    fill_store(root, 12)
    segments = segment_paths(root / "journal")
    assert len(segments) > 2
    assert segments[0].name == f"{1:020d}.jsonl"
    fill_store(root, 3)
    con = open_store(root)
    try:
        assert con.execute("SELECT count(*), max(seq) FROM events").fetchall()[0] == (15, 15)
    finally:
        con.close()
    assert verify_store(root).ok


def test_the_index_can_be_rebuilt_from_the_journal_alone(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fill_store(root, 7)
    with connect(root / "index.duckdb") as con:
        expected = con.execute("SELECT * FROM event_log ORDER BY seq").fetchall()
    (root / "index.duckdb").unlink()
    with EventLog.open(root) as log:
        rebuilt = log.index.execute("SELECT * FROM event_log ORDER BY seq").fetchall()
    assert rebuilt == expected


def test_a_sync_after_segments_rotate_covers_every_segment_and_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync mode forwards once `sync` returns: the events at the end of a segment the
    journal rotated away from, and the new segment's name in `journal/`, must be on
    disk by then too, not only the segment being written."""
    monkeypatch.setattr("p3log.store.journal.SEGMENT_BYTES", 300)
    synced: list[str] = []

    def noting(real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
            real(fd)

        return sync

    monkeypatch.setattr(os, "fdatasync", noting(os.fdatasync))
    monkeypatch.setattr(os, "fsync", noting(os.fsync))
    journal_dir = tmp_path / "journal"
    journal = open_journal(journal_dir)
    try:
        for seq in range(1, 13):
            journal.append(b"x" * 99 + b"\n", seq, f"h{seq}")
        segments = segment_paths(journal_dir)
        assert len(segments) > 2
        synced.clear()
        journal.sync()
    finally:
        journal.close()
    assert set(synced) >= {str(path) for path in segments} | {str(journal_dir)}
