"""The pure parts of the issue-13 benchmark harness (bench/): its reading of /proc and
its table. The figures themselves are never asserted (timing belongs to bench/)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # bench/ scripts import each other by name


def test_parse_stat_reads_utime_and_stime_past_a_command_name_with_spaces_and_parens():
    import procstat

    tick = procstat.TICK
    fields = ["S", *["0"] * 10, "250", "40", *["0"] * 30]  # fields 3.., utime 14, stime 15
    text = f"4242 (tap (index) x) {' '.join(fields)}\n"
    assert procstat.parse_stat(text) == (250 * tick, 40 * tick)


def test_sample_of_this_process_counts_its_main_thread_and_a_child():
    import subprocess

    import procstat

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sample = procstat.sample(os.getpid())
        assert child.pid in sample.child_pids
        assert sample.loop > 0
        assert procstat.rss_mb(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()


def test_rss_is_read_from_the_vmrss_line():
    import procstat

    assert procstat.parse_rss_kb("Name:\tpython\nVmRSS:\t  20480 kB\nVmSwap:\t0 kB\n") == 20480


def test_verdict_names_the_best_bound_met_for_either_direction():
    import issue13

    assert issue13.verdict(1.05, 1.3, 1.1, higher_is_better=False) == "moonshot met"
    assert issue13.verdict(1.2, 1.3, 1.1, higher_is_better=False) == "target met"
    assert issue13.verdict(2.8, 1.3, 1.1, higher_is_better=False) == "NOT met"
    assert issue13.verdict(0.85, 0.8, 0.95, higher_is_better=True) == "target met"
    assert issue13.verdict(float("nan"), 0.8, 0.95, higher_is_better=True) == "not measured"


def test_table_has_one_line_per_figure_and_numbers_the_notes():
    import issue13

    rows = [
        issue13.Row("figure one", "2.8x", "2.9x", "1.2x", "≤ 1.3x", "≤ 1.1x", "target met"),
        issue13.Row("two", "17 %", "16%", "40%", "≥ 50 %", "≥ 80 %", "NOT met", "why: fsync"),
    ]
    lines = issue13.format_table(rows).splitlines()
    assert lines[0].startswith("| # ") and "old" in lines[0] and "new" in lines[0]
    assert lines[2].split("|")[2].strip() == "figure one"
    assert lines[3].split("|")[4].strip() == "16%"
    assert len({len(line) for line in lines[:4]}) == 1  # the columns line up
    assert lines[-1] == "2. why: fsync"
