"""JSONL import and export: export(import(x)) == x, and a bad file changes nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p3log.store import transfer
from p3log.store.errors import ImportFileError, StoreError
from p3log.store.event import Event
from p3log.store.journal import segment_name, segment_paths
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.transfer import NULL_PARTITION, export_events_parquet, export_store, import_jsonl
from p3log.store.verify import verify_store
from tests.conftest import fill_store


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


def test_the_export_is_the_journal_format_between_a_header_and_an_end_line(
    tmp_path: Path,
) -> None:
    _mixed_store(tmp_path / "s")
    export_store(tmp_path / "s", "jsonl", tmp_path / "out.jsonl")
    journal = b"".join(path.read_bytes() for path in segment_paths(tmp_path / "s" / "journal"))
    header, *records, end = (tmp_path / "out.jsonl").read_bytes().splitlines(keepends=True)
    assert b"".join(records) == journal
    assert json.loads(header) == {"p3log_export": 1}
    assert json.loads(end) == {
        "p3log_export_end": {
            "events": 6,
            "sha256": hashlib.sha256(header + b"".join(records)).hexdigest(),
        }
    }


def _files(root: Path) -> dict[Path, bytes]:
    """Every file of a store but its index (whose bytes a read may change; verify
    compares the index's events with the journal's)."""
    return {
        path: path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and path.name != "index.duckdb"
    }


def test_importing_the_same_events_again_is_refused_and_changes_nothing(
    tmp_path: Path, store_with: Callable[[int], Path]
) -> None:
    _mixed_store(tmp_path / "origin")
    export_store(tmp_path / "origin", "jsonl", tmp_path / "x.jsonl")
    root = store_with(3)
    assert import_jsonl(root, tmp_path / "x.jsonl") == 6
    export_store(root, "jsonl", tmp_path / "again.jsonl")
    before = _files(root)
    with pytest.raises(ImportFileError, match=r"6 of its 6 events are already in the store"):
        import_jsonl(root, tmp_path / "x.jsonl")
    # The same events in another file (an export of the importing store) are refused too.
    with pytest.raises(ImportFileError, match=r"already in the store \(the first as seq 1\)"):
        import_jsonl(root, tmp_path / "again.jsonl")
    assert _files(root) == before
    report = verify_store(root)
    assert report.ok
    assert report.count == report.indexed == 9


@settings(max_examples=30, deadline=None)
@given(cut=st.data())
def test_an_export_cut_anywhere_is_refused_as_a_whole(
    tmp_path_factory: pytest.TempPathFactory, cut: st.DataObject
) -> None:
    work = tmp_path_factory.mktemp("cut")
    _mixed_store(work / "origin")
    export_store(work / "origin", "jsonl", work / "x.jsonl")
    whole = (work / "x.jsonl").read_bytes()
    boundaries = [n for n in range(1, len(whole)) if whole[n - 1 : n] == b"\n"]
    # Half the cases at a line boundary: the hard case, where every line is whole.
    # (Only the last newline gone loses nothing: that file is whole, and imports.)
    at = cut.draw(st.sampled_from(boundaries) | st.integers(1, len(whole) - 2))
    (work / "cut.jsonl").write_bytes(whole[:at])
    root = work / "store"
    fill_store(root, 2)
    before = _files(root)
    with pytest.raises(ImportFileError, match="nothing was imported"):
        import_jsonl(root, work / "cut.jsonl")
    assert _files(root) == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda b: b.replace("café".encode(), b"cafe"), "does not match its end line"),
        (lambda b: b.replace(b'"events":6', b'"events":5'), "the end line counts 5 events"),
        (lambda b: b + b, "a line after the export's end line"),
        (lambda b: b.split(b"\n", 1)[1] + b, "header or end line out of place"),
    ],
)
def test_a_changed_or_concatenated_export_is_refused(
    tmp_path: Path, change: Callable[[bytes], bytes], problem: str
) -> None:
    _mixed_store(tmp_path / "origin")
    export_store(tmp_path / "origin", "jsonl", tmp_path / "x.jsonl")
    changed = change((tmp_path / "x.jsonl").read_bytes())
    assert changed != (tmp_path / "x.jsonl").read_bytes()
    (tmp_path / "y.jsonl").write_bytes(changed)
    with pytest.raises(ImportFileError, match=problem):
        import_jsonl(tmp_path / "s", tmp_path / "y.jsonl")
    assert segment_paths(tmp_path / "s" / "journal") == []


def test_a_failed_export_leaves_an_earlier_one_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mixed_store(tmp_path / "s")
    target = tmp_path / "x.jsonl"
    export_store(tmp_path / "s", "jsonl", target)
    earlier = target.read_bytes()

    events_in_order = transfer._events_in_order

    def broken(con: duckdb.DuckDBPyConnection) -> Iterator[Event]:
        yield from list(events_in_order(con))[:3]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transfer, "_events_in_order", broken)
    with pytest.raises(StoreError, match="No space left"):
        export_store(tmp_path / "s", "jsonl", target)
    assert target.read_bytes() == earlier
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s", "x.jsonl"]


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
        names = ", ".join(
            row[0] for row in con.execute("DESCRIBE SELECT * FROM event_log").fetchall()
        )
        expected = con.execute(f"SELECT {names} FROM event_log ORDER BY seq").fetchall()
        assert export_events_parquet(con, tmp_path / "out", "s-1") == 6
    finally:
        con.close()
    # day=<today>/resource=<NULL>/: a file for each range
    files = (tmp_path / "out").glob(f"day=*/resource={NULL_PARTITION}/*.parquet")
    assert {path.name for path in files} == {"part-000000-0.parquet", "part-000001-0.parquet"}
    read = f"read_parquet('{tmp_path / 'out'}/**/*.parquet', hive_partitioning = true)"
    rows = duckdb.sql(f"SELECT {names} FROM {read} ORDER BY seq").fetchall()
    assert rows == expected
    assert duckdb.sql(f"SELECT DISTINCT store_id FROM {read}").fetchall() == [("s-1",)]


def test_what_a_killed_import_left_in_incoming_is_never_read_and_is_deleted_on_open(
    tmp_path: Path, store_with: Callable[[int], Path]
) -> None:
    root = store_with(3)
    _mixed_store(tmp_path / "origin")
    export_store(tmp_path / "origin", "jsonl", tmp_path / "x.jsonl")
    # Half an import, as a kill before its commit leaves it: records that chain on
    # from the head, cut mid-line.
    incoming = root / "journal" / "incoming"
    incoming.mkdir()
    records = (tmp_path / "x.jsonl").read_bytes().splitlines(keepends=True)[1:-1]
    (incoming / segment_name(4)).write_bytes(b"".join(records)[:-40])
    report = verify_store(root)
    assert report.ok and report.count == 3
    con = open_store(root)  # opens as the writer first: recovery runs
    try:
        assert con.execute("SELECT count(*) FROM events").fetchall() == [(3,)]
    finally:
        con.close()
    assert list(incoming.iterdir()) == []
    assert import_jsonl(root, tmp_path / "x.jsonl") == 6
