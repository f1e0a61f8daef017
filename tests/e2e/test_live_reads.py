"""Querying a store every second while a tap records into it, as an analyst would."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.processes import start_p3log_server

ROOT = Path(__file__).parents[2]
COUNTS = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM transactions)"


def _query(store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p3log", "sql", "--store", str(store), "--format", "csv", COUNTS],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_queries_during_a_recording_see_the_counts_grow_and_never_a_lock_error(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    sim = start_p3log_server(
        "sim", "--listen", "127.0.0.1:0", "--scenario", "approve", "--time-scale", "0.05"
    )
    tap = start_p3log_server(
        "tap", "--listen", "127.0.0.1:0", "--upstream", sim.url, "--store", str(store)
    )
    script = str(ROOT / "fixtures" / "pos" / "simple.toml")
    pos = [sys.executable, "-m", "p3log", "pos", "--url", tap.url, "--script", script]
    counts: list[tuple[int, int]] = []
    try:
        recording = subprocess.Popen(pos, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(6):
                if recording.poll() is not None:  # keep the tap recording throughout
                    assert recording.returncode == 0, recording.communicate()
                    recording = subprocess.Popen(
                        pos, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                    )
                started = time.monotonic()
                result = _query(store)
                assert result.returncode == 0, result.stderr
                events, transactions = result.stdout.splitlines()[1].split(",")
                counts.append((int(events), int(transactions)))
                time.sleep(max(0.0, 1 - (time.monotonic() - started)))
        finally:
            recording.kill()
            recording.wait()
    finally:
        assert tap.stop(timeout=60) == 0
        sim.stop()
    assert counts == sorted(counts), counts  # never went back
    assert counts[-1][0] > counts[0][0] and counts[-1][1] > counts[0][1], counts
