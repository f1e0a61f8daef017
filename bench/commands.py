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
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from baseline import Side
from inputs import write_import_file


@dataclass(frozen=True)
class Timed:
    side: str
    what: str
    events: int
    seconds: float
    cpu: float  # user + system seconds of the command's process tree
    load: float  # 1-minute load average as it started

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(side: Side, what: str, events: int, *args: str) -> Timed:
    """Run `p3log ARGS` of `side` to its end; it must succeed."""
    load = os.getloadavg()[0]
    cpu = _children_cpu()
    started = time.perf_counter()
    done = side.run(side.p3log(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{side.name}: p3log {' '.join(args)} failed: {done.stderr.strip()}")
    return Timed(side.name, what, events, seconds, _children_cpu() - cpu, load)


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


def imported_stores(
    both: tuple[Side, Side], work: Path, events: int
) -> dict[str, tuple[Path, int]]:
    """A store of `events` imported events per side (for the tap's `p3log sql` figure)."""
    source = write_import_file(work / "events.jsonl", events)
    stores = {}
    for side in both:
        store = work / f"imported-{side.name}"
        import_events(side, source, store, events)
        stores[side.name] = (store, events)
    return stores


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
