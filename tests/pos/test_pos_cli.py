"""`p3log pos` as a user runs it: a real process against a real `p3log sim` process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from p3log.pos.script import load_script
from p3log.store.read import open_store
from tests.processes import start_p3log_server

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pos"
pytestmark = pytest.mark.slow


@pytest.fixture(params=["ws", "tcp"])
def sim_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh `p3log sim` process (default scenario); its URL from its first line."""
    sim = start_p3log_server(
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--transport",
        request.param,
        "--scenario",
        "default",
        "--time-scale",
        "0.01",
    )
    try:
        yield sim.url
    finally:
        sim.stop()


def pos(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p3log", "pos", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_demo_script_runs_clean(sim_url: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    demo = FIXTURES / "demo.toml"
    result = pos("--url", sim_url, "--script", demo, "--record", store)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    script = load_script(demo)
    expected = len(script.steps) + sum(step.meanwhile is not None for step in script.steps)
    assert len(lines) == expected + 1  # one per transaction, then the summary
    for number, line in enumerate(lines[:-1], start=1):
        assert re.match(rf"#{number}\s", line), line
        assert line.endswith(" ok"), line
        assert re.search(r"\d+ ms", line), line
    assert f"{expected} transactions in" in lines[-1]
    assert f"{expected} as expected, 0 unexpected" in lines[-1]
    # --record: every connection of the run is a session in the store.
    con = open_store(store)
    try:
        sessions = con.execute(
            "SELECT session_id, count(*) FILTER (WHERE kind = 'connection_opened'),"
            " count(*) FILTER (WHERE msg_type = 'EXECUTE_TRANSACTION_REQUEST')"
            " FROM events WHERE kind <> 'redaction_configured'"  # the store's, not a session's
            " GROUP BY session_id ORDER BY min(seq)"
        ).fetchall()
    finally:
        con.close()
    # The main connection, the meanwhile POS, and the one after the dropped link.
    assert len(sessions) == 3
    assert all(opened == 1 for _, opened, _ in sessions)
    executes = sum(step.amend is None for step in script.steps) + expected - len(script.steps)
    assert sum(count for _, _, count in sessions) == executes


def test_a_failed_expectation_exits_1(sim_url: str, tmp_path: Path) -> None:
    script = tmp_path / "wrong.toml"
    script.write_text(
        '[login]\nmerchant_identifier = "m"\n\n'
        '[[transaction]]\namount = 90.01\nexpect = "APPROVED"\n',
        encoding="utf-8",
    )
    result = pos("--url", sim_url, "--script", script, env={"P3LOG_MERCHANT_SECRET": "x"})
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert "DECLINED" in first and "UNEXPECTED (expected APPROVED)" in first
    assert "0 as expected, 1 unexpected" in result.stdout


def test_a_bad_script_is_one_line_and_exit_2(tmp_path: Path) -> None:
    script = tmp_path / "bad.toml"
    script.write_text('[login]\nmerchant_identifier = "m"\n[[transaction]]\nammount = 1\n')
    result = pos("--url", "ws://127.0.0.1:9/", "--script", script)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown key(s) ['ammount']" in result.stderr
    bad_url = pos("--url", "http://127.0.0.1:9/", "--script", FIXTURES / "simple.toml")
    assert bad_url.returncode == 2
    assert bad_url.stderr.startswith("p3log: --url 'http://127.0.0.1:9/': expected ws://")


def test_no_server_is_one_line_and_exit_1() -> None:
    result = pos("--url", "tcp://127.0.0.1:9", "--script", FIXTURES / "simple.toml")
    assert result.returncode == 1
    assert result.stderr.startswith("p3log: cannot start a session with tcp://127.0.0.1:9")
    assert result.stderr.strip().count("\n") == 0
