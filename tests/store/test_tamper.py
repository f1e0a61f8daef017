"""verify names the first seq that does not match, whatever was done to the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from typer.testing import CliRunner

from p3log.cli import app
from p3log.store.errors import StoreCorrupt
from p3log.store.event import Event, seal
from p3log.store.index import connect
from p3log.store.journal import segment_paths
from p3log.store.records import decode_canonical, decode_event, decode_line, encode_record
from p3log.store.verify import Checkpoint, make_checkpoint, verify_store
from tests.conftest import fill_store

EVENTS = 40


@pytest.fixture
def store(store_with: Callable[[int], Path]) -> Path:
    root = store_with(EVENTS)
    assert verify_store(root).ok
    return root


def _sql(root: Path, statement: str) -> None:
    with connect(root / "index.duckdb") as con:
        con.execute(statement)


def _journal_lines(root: Path) -> tuple[Path, list[bytes]]:
    (segment,) = segment_paths(root / "journal")
    return segment, segment.read_bytes().splitlines(keepends=True)


def _failure(root: Path, against: Checkpoint | None = None) -> tuple[int, str]:
    report = verify_store(root, against=against)
    assert report.problem is not None, "verify passed a tampered store"
    return report.problem.seq, report.problem.source


def test_an_untouched_store_verifies_with_count_and_head(store: Path) -> None:
    report = verify_store(store)
    assert (report.ok, report.count, report.indexed) == (True, EVENTS, EVENTS)
    last = decode_event(decode_line(_journal_lines(store)[1][-1]))
    assert report.head_hash == last.hash


def test_a_changed_row_in_the_index_is_named(store: Path) -> None:
    _sql(store, "UPDATE event_log SET payload = replace(payload, 'PING', 'PONG') WHERE seq = 17")
    assert _failure(store) == (17, "index")


def test_a_changed_timestamp_in_the_index_is_named(store: Path) -> None:
    _sql(store, "UPDATE event_log SET recorded_at = recorded_at + INTERVAL 1 SECOND WHERE seq = 9")
    assert _failure(store) == (9, "index")


def test_a_deleted_row_in_the_index_is_named(store: Path) -> None:
    _sql(store, "DELETE FROM event_log WHERE seq = 17")
    assert _failure(store) == (17, "index")


def test_an_inserted_row_in_the_index_is_named(store: Path) -> None:
    _sql(store, "INSERT INTO event_log SELECT * FROM event_log WHERE seq = 17")
    assert _failure(store) == (17, "index")


def test_swapped_rows_in_the_index_are_named(store: Path) -> None:
    _sql(
        store,
        "UPDATE event_log SET seq = CASE seq WHEN 10 THEN 20 ELSE 10 END WHERE seq IN (10, 20)",
    )
    assert _failure(store) == (10, "index")


def test_a_rewritten_chain_in_the_index_is_caught_against_the_journal(store: Path) -> None:
    """Rehashing every event from seq 30 on keeps the index chain consistent."""
    with connect(store / "index.duckdb") as con:
        con.execute("UPDATE event_log SET session_id = 'forged' WHERE seq >= 30")
    _, lines = _journal_lines(store)
    forged = _rechain([decode_event(decode_line(line)) for line in lines], start=30)
    with connect(store / "index.duckdb") as con:
        for event in forged[29:]:
            con.execute(
                "UPDATE event_log SET prev_hash = ?, hash = ? WHERE seq = ?",
                [event.prev_hash, event.hash, event.seq],
            )
    assert _failure(store) == (30, "index")


def test_a_changed_byte_in_the_journal_is_named(store: Path) -> None:
    segment, lines = _journal_lines(store)
    lines[22] = lines[22].replace(b"PING", b"PONG", 1)
    segment.write_bytes(b"".join(lines))
    assert _failure(store) == (23, "journal")


def test_a_damaged_journal_line_is_named(store: Path) -> None:
    segment, lines = _journal_lines(store)
    lines[22] = lines[22][:40] + b"\x00garbage\n"
    segment.write_bytes(b"".join(lines))
    assert _failure(store) == (23, "journal")


def test_a_deleted_journal_line_is_named(store: Path) -> None:
    segment, lines = _journal_lines(store)
    del lines[22]
    segment.write_bytes(b"".join(lines))
    assert _failure(store) == (23, "journal")


def test_swapped_journal_records_are_named(store: Path) -> None:
    segment, lines = _journal_lines(store)
    lines[5] = lines[5].replace(b'"seq":6,', b'"seq":7,')
    lines[6] = lines[6].replace(b'"seq":7,', b'"seq":6,')
    segment.write_bytes(b"".join(lines))
    assert _failure(store) == (6, "journal")


def test_verify_against_a_checkpoint_passes_when_the_log_only_grew(store: Path) -> None:
    checkpoint = make_checkpoint(store)
    fill_store(store, 5)
    report = verify_store(store, against=checkpoint)
    assert report.ok
    assert report.count == EVENTS + 5


def test_verify_against_a_checkpoint_catches_a_consistently_rewritten_log(store: Path) -> None:
    checkpoint = make_checkpoint(store)
    segment, lines = _journal_lines(store)
    forged = _rechain([decode_event(decode_line(line)) for line in lines], start=3)
    segment.write_bytes(b"".join(encode_record(event) for event in forged))
    (store / "index.duckdb").unlink()  # the forger rebuilds the index from the journal too
    assert verify_store(store).ok  # self-consistent: only the checkpoint can tell
    assert _failure(store, against=checkpoint) == (EVENTS, "checkpoint")


def test_verify_against_a_checkpoint_catches_a_truncated_log(store: Path) -> None:
    checkpoint = make_checkpoint(store)
    segment, lines = _journal_lines(store)
    segment.write_bytes(b"".join(lines[:-3]))
    (store / "index.duckdb").unlink()
    assert _failure(store, against=checkpoint) == (EVENTS, "checkpoint")


def test_a_checkpoint_file_round_trips(store: Path, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(store)
    path = tmp_path / "cp.json"
    path.write_text(checkpoint.to_json())
    assert Checkpoint.from_file(path) == checkpoint
    assert json.loads(path.read_text())["count"] == EVENTS


def _rechain(events: list[Event], start: int) -> list[Event]:
    """Events with every body from seq `start` on changed and re-hashed consistently."""
    out = events[: start - 1]
    for event in events[start - 1 :]:
        body = attrs.evolve(event.body, session_id="forged")
        out.append(seal(body, event.seq, out[-1].hash))
    return out


# The journal's physical order is its seq order.


def _swap_last_two(root: Path) -> None:
    segment, lines = _journal_lines(root)
    lines[-2], lines[-1] = lines[-1], lines[-2]
    segment.write_bytes(b"".join(lines))


def test_swapped_last_journal_lines_are_named_by_verify(store: Path) -> None:
    _swap_last_two(store)
    assert _failure(store) == (EVENTS - 1, "journal")


@pytest.mark.parametrize("index", ["kept", "deleted"])
def test_the_writer_refuses_a_journal_out_of_order_and_never_reuses_a_seq(
    store: Path, index: str
) -> None:
    _swap_last_two(store)
    if index == "deleted":
        (store / "index.duckdb").unlink()
    with pytest.raises(StoreCorrupt, match="p3log verify") as refused:
        fill_store(store, 1)
    assert len(str(refused.value).splitlines()) == 1
    _, lines = _journal_lines(store)
    seqs = [decode_line(line)["seq"] for line in lines]
    assert sorted(seqs) == list(range(1, EVENTS + 1))  # nothing appended, nothing reused


def test_a_planted_seq_beyond_the_head_is_refused_on_open(store: Path) -> None:
    """A line in the tail renumbered past the last record: appending would reuse it."""
    segment, lines = _journal_lines(store)
    lines[-2] = lines[-2].replace(f'"seq":{EVENTS - 1},'.encode(), f'"seq":{EVENTS + 1},'.encode())
    segment.write_bytes(b"".join(lines))
    (store / "index.duckdb").unlink()
    with pytest.raises(StoreCorrupt, match="p3log verify"):
        fill_store(store, 1)
    assert _failure(store)[1] == "journal"


# A line verify accepts has exactly one reading: the canonical record, byte for byte.

NON_CANONICAL = {
    # DuckDB reads the first, Python's json the last
    "duplicate payload key": lambda line: line.replace(
        b',"raw_b64":', b',"payload":"{\\"type\\":\\"FORGED\\"}","raw_b64":', 1
    ),
    "extra key": lambda line: line.replace(b'"seq":', b'"extra":1,"seq":', 1),
    "keys reordered": lambda line: _reorder(line),
    "seq as a float": lambda line: line.replace(b'"seq":23,', b'"seq":23.0,', 1),
    "seq as a string": lambda line: line.replace(b'"seq":23,', b'"seq":"23",', 1),
    "a needless escape": lambda line: line.replace(b'"client"', b'"\\u0063lient"', 1),
    "a space": lambda line: line.replace(b'"seq":23,', b'"seq": 23,', 1),
}


def _reorder(line: bytes) -> bytes:
    record = json.loads(line)
    keys = list(record)
    keys[1], keys[2] = keys[2], keys[1]
    return json.dumps({key: record[key] for key in keys}, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("change", sorted(NON_CANONICAL))
def test_a_non_canonical_journal_line_fails_verify(store: Path, change: str) -> None:
    segment, lines = _journal_lines(store)
    changed = NON_CANONICAL[change](lines[22])
    assert changed != lines[22]
    lines[22] = changed
    segment.write_bytes(b"".join(lines))
    assert _failure(store) == (23, "journal")
    result = CliRunner().invoke(app, ["verify", "--store", str(store)])
    assert result.exit_code == 1, result.output


def test_every_written_line_is_canonical(store: Path) -> None:
    _, lines = _journal_lines(store)
    for line in lines:
        assert encode_record(decode_event(decode_canonical(line))) == line


def test_the_writer_refuses_to_append_after_a_non_canonical_last_line(store: Path) -> None:
    segment, lines = _journal_lines(store)
    lines[-1] = lines[-1].replace(b'"seq":', b'"seq": ', 1)
    segment.write_bytes(b"".join(lines))
    with pytest.raises(StoreCorrupt, match="p3log verify"):
        fill_store(store, 1)
    assert segment.read_bytes().count(b"\n") == EVENTS


@pytest.mark.parametrize(
    "plant",
    [
        lambda journal: (journal / "notes.jsonl").write_text("x\n"),
        lambda journal: (journal / f"{EVENTS + 1:020d}.jsonl").mkdir(),
        lambda journal: (journal / "+0000000000000000001.jsonl").write_bytes(
            (journal / f"{1:020d}.jsonl").read_bytes()
        ),
    ],
    ids=["other-name", "a-directory", "another-spelling-of-seq-1"],
)
def test_a_file_planted_in_the_journal_is_named_and_never_read(
    store: Path, plant: Callable[[Path], object]
) -> None:
    plant(store / "journal")

    assert _failure(store) == (0, "journal")  # one line, not a traceback
    (segment,) = segment_paths(store / "journal")  # readers and writers see only segments
    assert segment.name == f"{1:020d}.jsonl"
