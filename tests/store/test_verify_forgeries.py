"""verify fails, at the first seq where anything disagrees, however a store is forged.

The expected seq comes from a reference written here, independently of p3log's verify:
the chain's definition read sequentially in Python over the journal's lines (hashlib,
the canonical form spelled out below), and each index row and sealed segment row
compared field by field with the journal's record at its seq.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p3log.store import verify
from p3log.store.index import connect, sql_string
from p3log.store.intact import line_ranges
from p3log.store.journal import segment_paths
from p3log.store.log import EventLog
from p3log.store.segments import EventSegments, all_segments
from p3log.store.verify import verify_store
from tests.conftest import message_bytes

EVENTS = 14
SEALED = 5  # events per sealed segment: segments 1-5 and 6-10
FILE_LINES = 4  # the journal is split into files of 4 lines: 1, 5, 9, 13

_FIELDS = (
    "seq", "session_id", "sender", "kind", "msg_type", "tag", "resource", "status",
    "recorded_at_us", "mono_ns", "payload", "raw_b64", "parse_note", "redaction_policy",
    "redactions",
)  # fmt: skip
_KEYS = (*_FIELDS, "prev_hash", "hash")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _reference_hash(record: dict[str, Any]) -> str:
    parts = []
    for name in _FIELDS:
        value = record[name]
        if name == "redactions":
            value = ",".join(value)
        if value is None:
            parts.append(b"-;")
        else:
            text = str(value).encode("utf-8")
            parts.append(str(len(text)).encode() + b":" + text + b";")
    return hashlib.sha256(record["prev_hash"].encode() + b"".join(parts)).hexdigest()


def _journal_lines(root: Path) -> list[bytes]:
    return [line for p in segment_paths(root / "journal") for line in p.open("rb")]


def _reference_journal(lines: list[bytes]) -> tuple[int | None, list[dict[str, Any]]]:
    """The first seq where the journal breaks the chain's definition, and its records
    up to there."""
    records: list[dict[str, Any]] = []
    prev = "0" * 64
    for seq, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            return seq, records
        canonical = (
            isinstance(record, dict)
            and tuple(record) == _KEYS
            and json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            == line
        )
        if canonical and type(record["seq"]) is int and 0 < record["seq"] < seq:
            return record["seq"], records  # a seq that appears twice is named by that seq
        if (
            not canonical
            or record["seq"] != seq
            or record["prev_hash"] != prev
            or _reference_hash(record) != record["hash"]
        ):
            return seq, records
        records.append(record)
        prev = record["hash"]
    return None, records


def _as_record(row: dict[str, Any]) -> dict[str, Any]:
    """An event_log row (index, segment) in the journal's record shape."""
    record = dict(row)
    recorded_at = record.pop("recorded_at")
    record["recorded_at_us"] = (recorded_at - _EPOCH) // timedelta(microseconds=1)
    raw = record.pop("raw")
    record["raw_b64"] = base64.b64encode(raw).decode() if raw is not None else None
    return {key: record[key] for key in _KEYS}


def _rows(sql: str) -> list[dict[str, Any]]:
    with connect() as con:
        cursor = con.execute(sql)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _first_disagreeing(rows: list[dict[str, Any]], seqs: range, journal: list[Any]) -> int | None:
    """The first seq of `seqs` where `rows` (in seq order) are not exactly one row
    each, equal to the journal's record."""
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_seq.setdefault(row["seq"], []).append(_as_record(row))
    stray = [seq for seq in by_seq if seq not in seqs]
    for seq in seqs:
        found = by_seq.get(seq, [])
        if len(found) != 1 or seq > len(journal) or found[0] != journal[seq - 1]:
            return min([seq, *stray])
    return min(stray) if stray else None


def reference_first_bad_seq(root: Path) -> int | None:
    first_bad, journal = _reference_journal(_journal_lines(root))
    found = [first_bad] if first_bad is not None else []
    index = root / "index.duckdb"
    if index.exists():
        with connect(index, read_only=True) as con:
            cursor = con.execute("SELECT * FROM event_log ORDER BY seq")
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        top = max((row["seq"] for row in rows), default=0)
        # The index is a prefix of the journal: seq 1..its highest, each the journal's.
        if (bad := _first_disagreeing(rows, range(1, top + 1), journal)) is not None:
            found.append(bad)
    for segment in all_segments(root):
        rows = _rows(f"SELECT * FROM read_parquet({sql_string(str(segment.path))})")
        seqs = range(segment.first_seq, segment.last_seq + 1)
        if [row["seq"] for row in rows] != list(seqs):
            found.append(segment.first_seq)
        if (bad := _first_disagreeing(rows, seqs, journal)) is not None:
            found.append(bad)
    return min(found) if found else None


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with its journal in several files, an index and sealed segments."""
    root = tmp_path_factory.mktemp("pristine") / "store"
    with EventLog.open(root, followers=[EventSegments(root, seal_events=SEALED)]) as log:
        for n in range(EVENTS - 1):
            log.record_message("s1", "client", message_bytes("PING_REQUEST", f"t{n}", n="é/\t"))
        log.record_message("s1", "server", b"\xff not json")
    (journal,) = segment_paths(root / "journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.unlink()
    for start in range(0, len(lines), FILE_LINES):
        (root / "journal" / f"{start + 1:020d}.jsonl").write_bytes(
            b"".join(lines[start : start + FILE_LINES])
        )
    assert reference_first_bad_seq(root) is None
    assert verify_store(root).ok
    return root


def _index(root: Path, *statements: str, params: list[object] | None = None) -> None:
    with connect(root / "index.duckdb") as con:
        for statement in statements:
            con.execute(statement, params or [])


def _rewrite_journal(root: Path, lines: list[bytes]) -> None:
    for path in segment_paths(root / "journal"):
        path.unlink()
    (root / "journal" / f"{1:020d}.jsonl").write_bytes(b"".join(lines))


def _rehashed(line: bytes, change: str) -> bytes:
    """The line with `change` made to its payload and its hash recomputed, canonical."""
    record = json.loads(line)
    record["payload"] = (record["payload"] or "") + change
    record["hash"] = _reference_hash(record)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def forge(root: Path, how: str, seq: int, where: float, byte: int) -> None:
    """Forge the store at `root` in one hostile way, around `seq`."""
    lines = _journal_lines(root)
    line = lines[seq - 1]
    if how == "journal byte":
        at = int(where * (len(line) - 1))  # never the newline: that is a torn tail below
        lines[seq - 1] = line[:at] + bytes([byte]) + line[at + 1 :]
    elif how == "journal line dropped":
        del lines[seq - 1]
    elif how == "journal line repeated":
        lines.insert(seq, line)
    elif how == "journal lines swapped":
        lines[seq - 1 : seq + 1] = lines[seq - 1 : seq + 1][::-1]
    elif how == "journal torn tail":
        lines[-1] = lines[-1][: int(where * (len(lines[-1]) - 1))]
    elif how == "journal rehashed":
        lines[seq - 1] = _rehashed(line, "forged")
    if how.startswith("journal"):
        _rewrite_journal(root, lines)
    elif how == "index byte":
        _index(
            root,
            "UPDATE event_log SET payload = overlay(payload PLACING chr(?) FROM 3 FOR 1) "
            f"WHERE seq = {seq}",
            params=[32 + byte % 90],
        )
    elif how == "index rehashed":
        forged = json.loads(_rehashed(line, "forged"))
        _index(
            root,
            f"UPDATE event_log SET payload = ?, hash = ? WHERE seq = {seq}",
            params=[forged["payload"], forged["hash"]],
        )
    elif how == "index row dropped":
        _index(root, f"DELETE FROM event_log WHERE seq = {seq}")
    elif how == "index row repeated":
        _index(root, f"INSERT INTO event_log SELECT * FROM event_log WHERE seq = {seq}")
    elif how == "segment byte":
        segment = all_segments(root)[seq % 2]
        with connect() as con:
            source = sql_string(str(segment.path))
            con.execute(f"CREATE TABLE rows AS SELECT * FROM read_parquet({source})")
            pick = segment.first_seq + int(where * (segment.last_seq - segment.first_seq + 1))
            con.execute(
                "UPDATE rows SET payload = overlay(payload PLACING chr(?) FROM 3 FOR 1) "
                f"WHERE seq = {pick}",
                [32 + byte % 90],
            )
            con.execute(f"COPY (FROM rows ORDER BY seq) TO {source} (FORMAT parquet)")


FORGERIES = [
    "journal byte",
    "journal line dropped",
    "journal line repeated",
    "journal lines swapped",
    "journal torn tail",
    "journal rehashed",
    "index byte",
    "index rehashed",
    "index row dropped",
    "index row repeated",
    "segment byte",
]


def _copy(pristine: Path, factory: pytest.TempPathFactory) -> Path:
    root = factory.mktemp("forged") / "store"
    shutil.copytree(pristine, root)
    return root


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    how=st.sampled_from(FORGERIES),
    seq=st.integers(1, EVENTS - 1),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    byte=st.integers(0, 255),
)
def test_a_forged_store_fails_at_the_first_seq_the_reference_finds(
    pristine: Path,
    tmp_path_factory: pytest.TempPathFactory,
    how: str,
    seq: int,
    where: float,
    byte: int,
) -> None:
    root = _copy(pristine, tmp_path_factory)
    forge(root, how, seq, where, byte)
    expected = reference_first_bad_seq(root)
    report = verify_store(root)
    if expected is None:  # a byte replaced by itself, or a swap of equal lines
        assert report.ok, report.problem
    else:
        assert report.problem is not None, f"{how} at {seq} passed verify"
        assert report.problem.seq == expected, report.problem


@pytest.fixture
def in_worker_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """verify's proof over worker processes even for a small journal, each journal file
    cut into byte ranges of a few lines, so forgeries land on both sides of a cut."""
    monkeypatch.setattr(verify, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(verify, "RANGE_BYTES", 1200)
    yield


@pytest.mark.usefixtures("in_worker_processes")
@pytest.mark.parametrize("how", ["none", *FORGERIES])
def test_the_proof_in_worker_processes_finds_the_same_first_seq(
    pristine: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    root = _copy(pristine, tmp_path_factory)
    if how == "none":  # an intact store is proven by the workers, not the exact report
        monkeypatch.setattr(verify, "_exact_report", None)
    else:
        forge(root, how, 6, 0.5, 65)
    files = segment_paths(root / "journal")
    cuts = [line_ranges(path, -(-path.stat().st_size // verify.RANGE_BYTES)) for path in files]
    assert sum(map(len, cuts)) > len(files)  # some file is shared out over ranges
    expected = reference_first_bad_seq(root)
    report = verify_store(root)
    assert (report.problem.seq if report.problem else None) == expected, report.problem
    if expected is None:
        assert (report.count, report.indexed) == (EVENTS, EVENTS)


def test_verify_writes_nothing_in_the_store_or_the_working_directory(
    pristine: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _copy(pristine, tmp_path_factory)
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    forge(root, "index rehashed", 3, 0.5, 65)
    forged = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert verify_store(root).problem is not None
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == forged
    assert set(forged) == set(before)
    assert list(cwd.iterdir()) == []
