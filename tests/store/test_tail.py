"""The journal follower: complete lines only, in seq order, across segments, and
nothing it cannot prove continues the index."""

from __future__ import annotations

from pathlib import Path

import pytest

from p3log.store import journal
from p3log.store.errors import StoreCorrupt
from p3log.store.event import GENESIS_HASH
from p3log.store.journal import segment_paths
from p3log.store.log import EventLog
from p3log.store.tail import JournalTail
from tests.conftest import message_bytes


def _record(root: Path, count: int, start: int = 0) -> list[str]:
    """Journal `count` events (no index: as the tap does); their hashes."""
    with EventLog.open(root, index=False) as log:
        return [
            log.record_message("s", "client", message_bytes("A_REQUEST", str(n))).hash
            for n in range(start, start + count)
        ]


def _seqs(lines: list[bytes]) -> list[int]:
    return [int(line[7 : line.index(b",")]) for line in lines]


def test_it_reads_complete_lines_only_and_leaves_a_line_being_written(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _record(root, 3)
    tail = JournalTail(root / "journal", 0, GENESIS_HASH)
    (segment,) = segment_paths(root / "journal")
    whole = segment.read_bytes()
    with segment.open("ab") as out:  # the recorder is half-way through seq 4
        out.write(b'{"seq":4,"session_id":"s","sen')
    assert _seqs(tail.read(100)) == [1, 2, 3]
    assert tail.read(100) == []
    # A restarted recorder sets the torn line aside and appends seq 4 where it stood.
    with segment.open("r+b") as out:
        out.truncate(len(whole))
    _record(root, 2, start=3)
    assert _seqs(tail.read(100)) == [4, 5]


def test_it_starts_after_the_index_head_and_bounds_a_read(tmp_path: Path) -> None:
    root = tmp_path / "s"
    hashes = _record(root, 10)
    tail = JournalTail(root / "journal", 4, hashes[3])
    assert _seqs(tail.read(3)) == [5, 6, 7]
    assert _seqs(tail.read(100)) == [8, 9, 10]


def test_it_moves_on_to_the_next_segment_once_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "SEGMENT_BYTES", 2_000)  # a few lines per segment
    root = tmp_path / "s"
    hashes = _record(root, 30)
    assert len(segment_paths(root / "journal")) > 3
    assert _seqs(JournalTail(root / "journal", 0, GENESIS_HASH).read(1000)) == list(range(1, 31))
    later = JournalTail(root / "journal", 17, hashes[16])  # found by name and line count
    assert _seqs(later.read(1000)) == list(range(18, 31))
    _record(root, 5, start=30)
    assert _seqs(later.read(1000)) == list(range(31, 36))


def test_an_index_ahead_of_the_journal_or_of_another_chain_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    hashes = _record(root, 5)
    with pytest.raises(StoreCorrupt, match="no seq 9"):
        JournalTail(root / "journal", 9, "0" * 64)
    with pytest.raises(StoreCorrupt, match="not the index's"):
        JournalTail(root / "journal", 3, hashes[2].replace(hashes[2][0], "x"))


def test_a_line_that_is_not_the_next_seq_or_does_not_chain_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _record(root, 4)
    (segment,) = segment_paths(root / "journal")
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + lines[2] + lines[1] + lines[3])  # out of order
    with pytest.raises(StoreCorrupt, match="does not hold seq 2"):
        JournalTail(root / "journal", 0, GENESIS_HASH).read(100)
    # The right seq but another chain: a line rewritten after it was followed.
    forged = lines[1][:-141] + b"f" * 64 + lines[1][-77:]  # its prev_hash
    segment.write_bytes(lines[0] + forged)
    with pytest.raises(StoreCorrupt, match="does not chain"):
        JournalTail(root / "journal", 0, GENESIS_HASH).read(100)


def test_bytes_left_in_a_segment_a_later_one_follows_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "SEGMENT_BYTES", 2_000)
    root = tmp_path / "s"
    _record(root, 20)
    first = segment_paths(root / "journal")[0]
    with first.open("ab") as out:
        out.write(b'{"seq":')
    with pytest.raises(StoreCorrupt, match="bytes after its last whole line"):
        JournalTail(root / "journal", 0, GENESIS_HASH).read(1000)
