"""Projections behind a real tap: current when it stops, and right after SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb

from p3log.projections.opening import open_store
from p3log.store.layout import StoreLayout
from tests.processes import start_p3log_server

ROOT = Path(__file__).parents[2]


def _pos(url: str, script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "p3log", "pos", "--url", url, "--script", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_tap_keeps_the_projections_level_with_what_it_records(tmp_path: Path) -> None:
    store = tmp_path / "store"
    sim = start_p3log_server("sim", "--listen", "127.0.0.1:0", "--time-scale", "0.01")
    try:
        tap = start_p3log_server(
            "tap", "--listen", "127.0.0.1:0", "--upstream", sim.url, "--store", str(store)
        )
        try:
            pos = _pos(tap.url, str(ROOT / "fixtures" / "pos" / "simple.toml"))
            assert pos.wait(timeout=120) == 0, pos.communicate()
        finally:
            assert tap.stop(timeout=60) == 0
    finally:
        sim.stop()
    # Read the index as the tap left it: no catch-up by this reader.
    con = duckdb.connect(str(StoreLayout(store).index_path), read_only=True)
    try:
        head = con.execute("SELECT max(seq) FROM events").fetchall()[0][0]
        through = con.execute("SELECT projected_through FROM projection_meta").fetchall()[0][0]
        outcomes = con.execute("SELECT outcome FROM transactions ORDER BY request_seq").fetchall()
    finally:
        con.close()
    assert through == head
    assert outcomes == [("APPROVED",), ("APPROVED",)]


def test_after_sigkill_the_transaction_in_flight_is_incomplete(tmp_path: Path) -> None:
    store = tmp_path / "store"
    # At time scale 1 a transaction takes seconds: time to kill the tap inside one.
    sim = start_p3log_server("sim", "--listen", "127.0.0.1:0", "--time-scale", "1")
    try:
        tap = start_p3log_server(
            "tap", "--listen", "127.0.0.1:0", "--upstream", sim.url, "--store", str(store)
        )
        pos = _pos(tap.url, str(ROOT / "fixtures" / "pos" / "simple.toml"))
        try:
            deadline = time.monotonic() + 60
            journal = StoreLayout(store).journal_dir
            while b"EXECUTE_TRANSACTION_UPDATE" not in b"".join(
                path.read_bytes() for path in journal.glob("*.jsonl")
            ):
                assert time.monotonic() < deadline, "no update was recorded"
                time.sleep(0.05)
            tap.kill()
        finally:
            pos.kill()
            pos.wait()
    finally:
        sim.stop()
    con = open_store(store)
    try:
        transactions = con.execute(
            "SELECT outcome, completed_at, update_count >= 1 FROM transactions"
        ).fetchall()
        findings = con.execute("SELECT rule FROM protocol_findings").fetchall()
        head = con.execute("SELECT max(seq) FROM events").fetchall()[0][0]
        through = con.execute("SELECT projected_through FROM projection_meta").fetchall()[0][0]
    finally:
        con.close()
    assert transactions == [("INCOMPLETE", None, True)]
    # The recording cannot tell a killed tap from a connection still open: no finding.
    assert findings == []
    assert through == head
