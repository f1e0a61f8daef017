"""The store figures of issue 13 measured through p3log's own commands, so that the
same code measures old and new alike: `p3log import`, `p3log verify`, `p3log rebuild`,
each a subprocess of its side (bench/baseline.py), timed on the wall clock, its CPU
from `resource.getrusage(RUSAGE_CHILDREN)` (user + system of the command and of any
process it waited for) and the load average as it started.

Inputs are made once per run: the import file (bench/inputs.py) and, for the rebuild,
stores of synthetic transactions written by the old side's own generator
(bench/projections.py --phase generate), which both sides can read.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from baseline import Side


@dataclass(frozen=True)
class Timed:
    side: str
    what: str
    events: int
    seconds: float
    cpu: float  # user + system seconds of the command's process tree
    load: float  # 1-minute load average as it started
    error: str = ""  # why the command failed (then seconds is NaN)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def last_error(stderr: str) -> str:
    """The line of a traceback that names the error (or the last line)."""
    lines = stderr.strip().splitlines() or ["(nothing on stderr)"]
    named = [line for line in lines if re.search(r"(Error|Exception)\b", line)]
    return (named or lines)[-1].strip()[:200]


def timed(side: Side, what: str, events: int, *args: str) -> Timed:
    """Run `p3log ARGS` of `side` to its end. A failure is reported, not raised: the
    other figures of the run are still worth having."""
    load = os.getloadavg()[0]
    cpu = _children_cpu()
    started = time.perf_counter()
    done = side.run(side.p3log(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    error = ""
    if done.returncode != 0:
        error = f"exit {done.returncode}: {last_error(done.stderr)}"
        log(f"{side.name}: p3log {' '.join(args)} failed: {error}")
        seconds = float("nan")
    return Timed(side.name, what, events, seconds, _children_cpu() - cpu, load, error)


def log(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def import_events(side: Side, source: Path, store: Path, events: int) -> Timed:
    shutil.rmtree(store, ignore_errors=True)
    log(f"import {side.name}: {events:,} events")
    return timed(side, "import", events, "import", str(source), "--store", str(store))


def verify(side: Side, store: Path, events: int) -> Timed:
    log(f"verify {side.name}: {events:,} events")
    return timed(side, "verify", events, "verify", "--store", str(store))


def rebuild(side: Side, store: Path, events: int) -> Timed:
    log(f"rebuild {side.name}: {events:,} events")
    return timed(side, "rebuild", events, "rebuild", "--store", str(store))


def copies(template: Path, work: Path, both: tuple[Side, Side]) -> dict[str, Path]:
    """A copy of the store `template` per side, so that each side starts from the same
    store (sealed segments and snapshots are written by whoever records into it)."""
    made = {}
    for side in both:
        copy = work / f"{template.parent.name}-{side.name}"
        shutil.rmtree(copy, ignore_errors=True)
        subprocess.run(["cp", "-a", "--reflink=auto", str(template), str(copy)], check=True)
        made[side.name] = copy
    return made


def generated_store(generator: Side, work: Path, transactions: int) -> tuple[Path, int]:
    """A store of `transactions` synthetic transactions (made once in `work`, then reused),
    by `generator`'s bench/projections.py; returns it and how many events it holds."""
    marker = work / "generated.json"
    if marker.exists():
        generated = json.loads(marker.read_text(encoding="utf-8"))
        if generated["requested"] == transactions:
            return work / "store", int(generated["events"])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log(f"generating {transactions:,} transactions ({generator.name}'s bench/projections.py)")
    out = generator.run(
        generator.script(
            "projections.py",
            *("--phase", "generate", "--store", str(work)),
            *("--transactions", str(transactions)),
        ),
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    generated = {"requested": transactions, **json.loads(out)}
    marker.write_text(json.dumps(generated), encoding="utf-8")
    return work / "store", int(generated["events"])
