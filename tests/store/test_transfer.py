"""JSONL import and export: export(import(x)) == x, and a bad file changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from p3log.store import transfer
from p3log.store.errors import ImportFileError
from p3log.store.journal import segment_paths
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.transfer import NULL_PARTITION, export_events_parquet, export_store, import_jsonl


def _mixed_store(root: Path) -> None:
    """Messages, lenient JSON, malformed bytes and lifecycle events in two sessions."""
    with EventLog.open(root) as log:
        log.record_lifecycle("a", "connection_opened", {"peer": "127.0.0.1:1"})
        log.record_message("a", "client", b'{"type":"LOGIN_MERCHANT_REQUEST","tag":"1"}')
        log.record_message("b", "client", b'{"type": "X_REQUEST", /* doc style */ "tag": "2",}')
        log.record_message("a", "server", b"\x00\x01 not json")
        log.record_message("b", "server", '{"type":"X_RESPONSE","tag":"2","note":"café"}'.encode())
        log.record_lifecycle("a", "connection_closed", {"by": "client", "code": 1000})


def test_export_of_an_import_reproduces_the_file(tmp_path: Path) -> None:
    _mixed_store(tmp_path / "origin")
    first = tmp_path / "first.jsonl"
    assert export_store(tmp_path / "origin", "jsonl", first) == 6

    assert import_jsonl(tmp_path / "copy", first) == 6
    second = tmp_path / "second.jsonl"
    export_store(tmp_path / "copy", "jsonl", second)
    assert second.read_bytes() == first.read_bytes()


def test_the_export_is_the_journal_format(tmp_path: Path) -> None:
    _mixed_store(tmp_path / "s")
    export_store(tmp_path / "s", "jsonl", tmp_path / "out.jsonl")
    journal = b"".join(path.read_bytes() for path in segment_paths(tmp_path / "s" / "journal"))
    assert (tmp_path / "out.jsonl").read_bytes() == journal


def test_import_reclassifies_and_rechains_into_a_non_empty_store(
    tmp_path: Path, store_with: Callable[[int], Path]
) -> None:
    _mixed_store(tmp_path / "origin")
    export_store(tmp_path / "origin", "jsonl", tmp_path / "x.jsonl")
    root = store_with(3)
    import_jsonl(root, tmp_path / "x.jsonl")
    with duckdb.connect(str(root / "index.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT seq, kind FROM events WHERE seq > 3 ORDER BY seq").fetchall()
    assert rows == [
        (4, "connection_opened"),
        (5, "message"),
        (6, "message"),
        (7, "malformed"),
        (8, "message"),
        (9, "connection_closed"),
    ]


def test_a_hand_written_line_needs_no_seq_or_hash(tmp_path: Path) -> None:
    line = {
        "session_id": "h",
        "sender": "client",
        "kind": "message",
        "recorded_at_us": 1,
        "mono_ns": 2,
        "payload": '{"type":"A_REQUEST","tag":"t"}',
    }
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    assert import_jsonl(tmp_path / "s", tmp_path / "in.jsonl") == 1


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not a JSON record"),
        ("[1]", "a record must be a JSON object"),
        ('{"sender": "client"}', "session_id must be a string"),
        ('{"session_id": "s", "sender": "pos", "kind": "message"}', "sender must be one of"),
        ('{"session_id": "s", "sender": "tap", "kind": "message"}', "kind 'message' does not go"),
        (
            '{"session_id": "s", "sender": "client", "kind": "message", "recorded_at_us": "x"}',
            "recorded_at_us must be an integer",
        ),
    ],
)
def test_a_bad_line_is_named_and_leaves_the_store_unchanged(
    tmp_path: Path, store_with: Callable[[int], Path], line: str, problem: str
) -> None:
    root = store_with(4)
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    good = json.dumps(
        {
            "session_id": "s",
            "sender": "client",
            "kind": "message",
            "recorded_at_us": 1,
            "mono_ns": 1,
            "payload": "{}",
        }
    )
    source = tmp_path / "bad.jsonl"
    source.write_text(f"{good}\n{line}\n")
    with pytest.raises(ImportFileError, match=rf"bad.jsonl:2: {problem}"):
        import_jsonl(root, source)
    after = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    assert after == before


def test_parquet_export_holds_every_event_partitioned_by_day_and_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mixed_store(tmp_path / "s")
    monkeypatch.setattr(transfer, "EXPORT_BATCH_ROWS", 4)  # two ranges: seq 1-4 and 5-6
    con = open_store(tmp_path / "s")
    try:
        expected = con.execute("SELECT * FROM events ORDER BY seq").fetchall()
        assert export_events_parquet(con, tmp_path / "out") == 6
    finally:
        con.close()
    # day=<today>/resource=<NULL>/: a file for each range
    files = (tmp_path / "out").glob(f"day=*/resource={NULL_PARTITION}/*.parquet")
    assert {path.name for path in files} == {"part-000000-0.parquet", "part-000001-0.parquet"}
    rows = duckdb.sql(
        f"SELECT * EXCLUDE (day) FROM read_parquet('{tmp_path / 'out'}/**/*.parquet', "
        "hive_partitioning = true) ORDER BY seq"
    ).fetchall()
    assert rows == expected
