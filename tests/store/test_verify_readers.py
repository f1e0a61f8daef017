"""What readers trust besides the journal: sealed segments and the index file.

A forged sealed segment fails `verify` at the forged seq, and a live reader (`p3log
sql` while another process holds the writer lock, as a recording tap does) refuses
it in one line. An index file that is not a DuckDB database is reported as damaged,
never as a store busy in another process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from typer.testing import CliRunner

from p3log.cli import app
from p3log.projections.opening import open_store
from p3log.store.errors import StoreCorrupt
from p3log.store.event import seal
from p3log.store.index import connect, sql_string
from p3log.store.layout import StoreLayout, writer_lock
from p3log.store.log import EventLog
from p3log.store.records import decode_event, decode_line
from p3log.store.segments import EventSegments, sealed_segments
from p3log.store.verify import verify_store
from tests.conftest import message_bytes
from tests.processes import run_p3log

EVENTS = 35
SEAL = 10  # three sealed segments (1-10, 11-20, 21-30) and a journal tail


def _store(root: Path) -> Path:
    with EventLog.open(root, followers=[EventSegments(root, seal_events=SEAL)]) as log:
        for n in range(EVENTS):
            sender = "client" if n % 2 == 0 else "server"
            log.record_message("s1", sender, message_bytes("PING_REQUEST", f"t{n}", n=n))
    assert [s.last_seq for s in sealed_segments(root)] == [10, 20, 30]
    assert verify_store(root).ok
    return root


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return _store(tmp_path / "store")


def _rewrite_segment(root: Path, first: int, select: str) -> Path:
    """Replace the segment starting at `first` with `select` over its rows (`seg`)."""
    (segment,) = [s for s in sealed_segments(root) if s.first_seq == first]
    forged = segment.path.with_suffix(".forged")
    with connect() as con:
        con.execute(f"CREATE VIEW seg AS FROM read_parquet({sql_string(str(segment.path))})")
        con.execute(f"COPY ({select}) TO {sql_string(str(forged))} (FORMAT parquet)")
    forged.replace(segment.path)
    return segment.path


def _live_sql(root: Path, query: str) -> subprocess.CompletedProcess[str]:
    """`p3log sql` while this process holds the writer lock, as a recording tap does."""
    with writer_lock(StoreLayout(root)):
        return subprocess.run(
            [sys.executable, "-m", "p3log", "sql", "--store", str(root), "--format", "csv", query],
            capture_output=True,
            text=True,
            timeout=60,
        )


def test_a_live_reader_reads_untouched_segments(store: Path) -> None:
    result = _live_sql(store, "SELECT count(*), max(seq) FROM events")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == f"{EVENTS},{EVENTS}"


FORGERIES = {
    # a changed payload, hash left alone
    "content": "SELECT * REPLACE (CASE WHEN seq = 14 THEN replace(payload, 'PING', 'PONG') "
    "ELSE payload END AS payload) FROM seg",
    # a row dropped
    "deleted": "SELECT * FROM seg WHERE seq <> 14",
    # a row's seq changed: two rows claim seq 15
    "renumbered": "SELECT * REPLACE (CASE WHEN seq = 14 THEN 15 ELSE seq END AS seq) FROM seg",
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_segment_fails_verify_at_its_seq(store: Path, forgery: str) -> None:
    path = _rewrite_segment(store, 11, FORGERIES[forgery])
    seq = {"content": 14, "deleted": 11, "renumbered": 11}[forgery]
    report = verify_store(store)
    assert report.problem is not None, "verify passed a forged segment"
    assert (report.problem.seq, report.problem.source) == (seq, path.name)
    result = CliRunner().invoke(app, ["verify", "--store", str(store)])
    assert result.exit_code == 1
    assert f"verify FAILED at seq {seq} ({path.name})" in result.output


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_live_reader_refuses_a_forged_segment_in_one_line(store: Path, forgery: str) -> None:
    path = _rewrite_segment(store, 11, FORGERIES[forgery])
    result = _live_sql(store, "SELECT session_id, payload FROM events WHERE seq = 14")
    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert str(path) in line and "p3log verify" in line


def test_a_forged_last_segment_with_a_consistent_chain_is_refused(store: Path) -> None:
    """Every row of 21-30 rewritten and re-chained consistently from seq 21: only the
    journal's hash at seq 30 can tell, and the live reader compares it."""
    forged = _forge_rechained(store, sealed_segments(store)[-1].path)
    result = _live_sql(store, "SELECT count(*) FROM events")
    assert result.returncode != 0 and str(forged) in result.stderr
    assert verify_store(store).problem is not None


def _forge_rechained(root: Path, path: Path) -> Path:
    """Rewrite the segment at `path` with every session_id changed, re-hashed in order."""
    journal = sorted((root / "journal").glob("*.jsonl"))[0].read_bytes().splitlines()
    events = {e.seq: e for e in (decode_event(decode_line(line)) for line in journal)}
    with connect() as con:
        seqs = [
            row[0]
            for row in con.execute(
                f"SELECT seq FROM read_parquet({sql_string(str(path))}) ORDER BY seq"
            ).fetchall()
        ]
        prev = events[seqs[0]].prev_hash
        con.execute(f"CREATE TABLE seg AS FROM read_parquet({sql_string(str(path))})")
        for seq in seqs:  # the forger seals with p3log's own code
            forged = seal(attrs.evolve(events[seq].body, session_id="forged"), seq, prev)
            con.execute(
                "UPDATE seg SET session_id = 'forged', prev_hash = ?, hash = ? WHERE seq = ?",
                [forged.prev_hash, forged.hash, seq],
            )
            prev = forged.hash
        tmp = path.with_suffix(".forged")
        con.execute(f"COPY (FROM seg ORDER BY seq) TO {sql_string(str(tmp))} (FORMAT parquet)")
    tmp.replace(path)
    return path


def test_a_segment_with_other_columns_is_refused(store: Path) -> None:
    path = _rewrite_segment(store, 1, "SELECT * EXCLUDE (raw) FROM seg")
    report = verify_store(store)
    assert report.problem is not None and report.problem.source == path.name
    result = _live_sql(store, "SELECT count(*) FROM events")
    assert result.returncode != 0 and str(path) in result.stderr


def test_a_segment_beyond_the_journal_fails_verify(store: Path) -> None:
    """Events the journal never held, sealed under a name after the head."""
    segment = sealed_segments(store)[-1]
    extra = segment.path.parent / f"events-{31:020d}-{40:020d}.parquet"
    with connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE (seq + 10 AS seq) FROM read_parquet("
            f"{sql_string(str(segment.path))})) TO {sql_string(str(extra))} (FORMAT parquet)"
        )
    report = verify_store(store)
    assert report.problem is not None and report.problem.source == extra.name


def _random_index(root: Path) -> Path:
    index = root / "index.duckdb"
    index.write_bytes(bytes(range(256)) * 64)
    for wal in root.glob("index.duckdb.wal"):
        wal.unlink()
    return index


def test_a_random_bytes_index_is_damaged_for_sql_never_busy(store: Path) -> None:
    index = _random_index(store)
    result = subprocess.run(
        [sys.executable, "-m", "p3log", "sql", "--store", str(store), "SELECT 1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "damaged" in line and str(index) in line and "rebuilds it from the journal" in line
    assert "another process" not in line


def test_a_random_bytes_index_is_damaged_for_open_store_and_verify(store: Path) -> None:
    index = _random_index(store)
    with pytest.raises(StoreCorrupt, match="damaged") as raised:
        open_store(store)
    assert str(index) in str(raised.value) and "another process" not in str(raised.value)
    report = verify_store(store)
    assert report.problem is not None
    assert (report.problem.source, report.problem.seq) == ("index", 0)
    assert "another process" not in str(report.problem)
    index.unlink()  # as the message says: the next open rebuilds it
    with open_store(store) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall() == [(EVENTS,)]


def test_an_index_held_by_another_process_is_still_busy_not_damaged(store: Path) -> None:
    """The other side of the distinction: DuckDB's lock means busy (the live path)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(store / "index.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with open_store(store) as con:  # live: segments and the journal's tail
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(EVENTS,)]
    finally:
        holder.communicate("", timeout=30)


def test_a_store_killed_before_its_first_event_verifies_as_empty(tmp_path: Path) -> None:
    """store.json and an empty journal (no segment yet): `p3log verify` says 0 events,
    it does not fail on the missing columns (found by the kill test of `pos --record`)."""
    store = tmp_path / "store"
    EventLog.open(store).close()
    (store / "index.duckdb").unlink()
    done = run_p3log("verify", "--store", store)
    assert done.returncode == 0, done.stderr
    assert verify_store(store).count == 0


def test_an_index_killed_before_its_table_was_made_verifies_and_is_rebuilt(store: Path) -> None:
    """A reader killed while it made a fresh index leaves a DuckDB file with no table
    (found by the kill test of `p3log sql`): verify checks the journal as if the index
    were missing, and the next open builds it."""
    (store / "index.duckdb").unlink()
    connect(store / "index.duckdb").close()  # the file, as the killed open left it
    done = run_p3log("verify", "--store", store)
    assert done.returncode == 0, done.stderr
    assert verify_store(store).count == EVENTS
    con = open_store(store)
    try:
        assert con.execute("SELECT count(*) FROM events").fetchall() == [(EVENTS,)]
    finally:
        con.close()
