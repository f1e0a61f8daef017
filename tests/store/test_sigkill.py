"""An append that has returned survives SIGKILL of the process that made it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from p3log.store.read import open_store
from p3log.store.verify import verify_store

CHILD = Path(__file__).with_name("appender_child.py")


def _run_and_kill(root: Path, acks_before_kill: int) -> list[int]:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(root)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert child.stdout is not None
    acked: list[int] = []
    for line in child.stdout:
        acked.append(int(line))
        if len(acked) == acks_before_kill:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked


def test_every_acknowledged_event_is_present_exactly_once_after_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "store"
    acked = _run_and_kill(root, 700)
    acked += _run_and_kill(root, 300)  # a second life on the same store, killed again

    con = open_store(root)
    try:
        seqs = [row[0] for row in con.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    finally:
        con.close()
    assert len(seqs) == len(set(seqs)), "an event was ingested twice"
    assert set(acked) <= set(seqs), "an acknowledged event was lost"
    assert seqs == list(range(1, len(seqs) + 1))
    report = verify_store(root)
    assert report.ok, report.problem
    assert report.count == len(seqs) == report.indexed
