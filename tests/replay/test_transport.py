"""Every recorded session says how it was carried, and a replay uses it: a session
that `p3log pos --record` recorded over framed TCP is served over framed TCP by
`p3log replay serve` without `--transport` (real processes, real sockets)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from p3log.store.read import open_store
from tests.processes import start_p3log_server

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pos"
pytestmark = pytest.mark.slow
SECRET = {"P3LOG_MERCHANT_SECRET": "tcp-secret"}


def pos(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p3log", "pos", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **SECRET},
    )


def transports(store: Path) -> dict[str, str | None]:
    con = open_store(store)
    try:
        rows = con.execute(
            "SELECT session_id, payload->>'transport' FROM events "
            "WHERE kind = 'connection_opened' ORDER BY seq"
        ).fetchall()
    finally:
        con.close()
    return {str(session): transport for session, transport in rows}


def test_a_tcp_recording_by_pos_record_replays_over_tcp(tmp_path: Path) -> None:
    store, script = tmp_path / "store", FIXTURES / "decline.toml"
    sim = start_p3log_server(
        "sim", "--listen", "127.0.0.1:0", "--transport", "tcp", "--time-scale", "0.01"
    )
    try:
        recorded = pos("--url", sim.url, "--script", script, "--store", store)
    finally:
        sim.stop()
    assert recorded.returncode == 0, recorded.stderr
    ((session, transport),) = transports(store).items()
    assert transport == "tcp"

    report = tmp_path / "report.xml"
    serve = start_p3log_server(
        "replay", "serve", "--store", str(store), session, "--listen", "127.0.0.1:0",
        "--asap", "--junit", str(report),
    )  # fmt: skip
    try:
        assert serve.scheme == "tcp", serve.banner
        replayed = pos("--url", serve.url, "--script", script)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert serve.process.wait(timeout=30) == 0
    finally:
        serve.kill()
    runs = {s: t for s, t in transports(store).items() if s.startswith("replay-")}
    assert list(runs.values()) == ["tcp"]
    root = ET.parse(report).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")
