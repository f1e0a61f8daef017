"""CPU and memory of a running process and its threads and children, from /proc.

A thread's CPU is utime + stime of /proc/<pid>/task/<tid>/stat (clock ticks). A
process's main thread has tid == pid: in the tap that is the trio event loop. Its
other threads (trio's worker threads, DuckDB's) did the index work in the old layout;
in the new one the index work is a child process (`p3log index --follow`), found
through /proc/<pid>/task/*/children, recursively. /proc rather than psutil: it is
what the issue's profile read, and it needs no dependency.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = 1 / os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[float, float]:
    """(utime, stime) in seconds from the text of a /proc/.../stat file. The command
    name (field 2) is in parentheses and may hold spaces or parentheses itself."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) * TICK, int(fields[12]) * TICK


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None  # the thread or process ended meanwhile


def children(pid: int) -> list[int]:
    """Every descendant process of `pid` (children, their children, ...)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = _read(task / "children") or ""
        for child in map(int, text.split()):
            found += [child, *children(child)]
    return found


def parse_rss_kb(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    return parse_rss_kb(_read(Path(f"/proc/{pid}/status")) or "") / 1024


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far: the process's main thread, its other threads, and all its
    descendant processes (every thread of each)."""

    loop: float
    threads: float
    children: float
    child_pids: tuple[int, ...]

    def __sub__(self, earlier: CpuSample) -> CpuSample:
        return CpuSample(
            self.loop - earlier.loop,
            self.threads - earlier.threads,
            self.children - earlier.children,
            self.child_pids,
        )


def _cpu(stat: Path) -> float:
    text = _read(stat)
    return sum(parse_stat(text)) if text is not None else 0.0


def process_cpu(pid: int) -> float:
    """CPU seconds so far of every thread `pid` has had, ended ones included."""
    return _cpu(Path(f"/proc/{pid}/stat"))


def sample(pid: int) -> CpuSample:
    loop = _cpu(Path(f"/proc/{pid}/task/{pid}/stat"))
    descendants = children(pid)
    return CpuSample(
        loop=loop,
        # the whole process minus its main thread: trio's worker threads end when idle,
        # and /proc/<pid>/stat keeps the CPU of ended threads
        threads=process_cpu(pid) - loop,
        children=sum(process_cpu(child) for child in descendants),
        child_pids=tuple(descendants),
    )


def tree_rss_mb(pid: int) -> float:
    """RSS of `pid` and all its descendants."""
    return rss_mb(pid) + sum(rss_mb(child) for child in children(pid))
