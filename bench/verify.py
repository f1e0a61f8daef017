"""verify benchmark: two p3log checkouts verify the same store, side by side in one run.

Each verify runs in a subprocess of its own, with its checkout first on PYTHONPATH (and
as its working directory), so an old commit can be measured beside the new code:

    git worktree add /tmp/verify-old 44395e8
    python bench/verify.py --store /tmp/verify-1m --old /tmp/verify-old [--events N]

The store is built first if DIR holds none (N events of ~1 KB through the tap's write
path with its followers: index, projections, sealed segments, snapshots); it is kept,
so later runs measure the same store. Printed for each: seconds, events/s, CPU seconds
(the process and its workers), peak RSS (the largest of them), and the load average
before and after (the machine is shared: figures from a busy one are not comparable).
`--full` measures `p3log verify` as the CLI runs it (with the projection snapshots
folded again); the default is the store's checks (`p3log.store.verify`).

`measure(python_path, store)` is the figure as a function, for a common harness.
Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from messages import message

REPO = Path(__file__).resolve().parents[1]

# Run in the measured checkout: verify, then its own figures as JSON on stdout.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
full = sys.argv[2] == "full"
if full:
    from p3log.projections.opening import verify_store
else:
    from p3log.store.verify import verify_store
started = time.perf_counter()
report = verify_store(Path(sys.argv[1]))
seconds = time.perf_counter() - started
own, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({
    "seconds": seconds,
    "ok": report.ok,
    "count": report.count,
    "problem": str(report.problem) if report.problem else None,
    "cpu_s": own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime,
    "peak_rss_mb": max(own.ru_maxrss, workers.ru_maxrss) / 1024,
}))
"""


def measure(python_path: Path | str, store: Path | str, *, full: bool = False) -> dict[str, Any]:
    """verify of `store` by the p3log checkout at `python_path`: seconds, events/s,
    CPU seconds, peak RSS (MB), ok, count, and the 1-minute load average before/after."""
    load_before = os.getloadavg()[0]
    python_path = Path(python_path).resolve()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store), "full" if full else "store"],
        cwd=python_path,
        env={**os.environ, "PYTHONPATH": str(python_path)},
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    # The last line: DuckDB may draw progress bars on stdout before it.
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["events_per_s"] = figures["count"] / figures["seconds"]
    figures["load_before"] = load_before
    figures["load_after"] = os.getloadavg()[0]
    return figures


def build_store(root: Path, count: int) -> None:
    """`count` events through the tap's write path, its followers included."""
    from p3log.projections.opening import open_log

    with open_log(root) as log:
        for n in range(count):
            log.record_message(f"s{n % 50}", "server", message(n))
            if n % 8192 == 8191:  # the indexer's batch: the index and followers follow
                log.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--store", type=Path, required=True, help="built there if missing")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--old", type=Path, help="an older checkout to measure beside")
    parser.add_argument("--new", type=Path, default=REPO, help="default: this checkout")
    parser.add_argument("--full", action="store_true", help="as `p3log verify` (snapshots)")
    parser.add_argument("--rounds", type=int, default=1, help="old, new, old, new, ...")
    args = parser.parse_args()

    if not (args.store / "store.json").exists():
        started = time.perf_counter()
        build_store(args.store, args.events)
        print(f"built {args.events:,} events in {time.perf_counter() - started:.0f} s")
    checkouts = [("old", args.old)] if args.old else []
    checkouts.append(("new", args.new))
    print(
        f"verify{' (full, as the CLI)' if args.full else ''} of {args.store}, {os.cpu_count()} CPUs"
    )
    header = f"{'code':<6}{'seconds':>9}{'events/s':>12}{'CPU s':>8}{'peak RSS MB':>13}"
    print(f"{header}{'load before/after':>19}  result")
    for _ in range(args.rounds):
        for name, path in checkouts:
            f = measure(path, args.store, full=args.full)
            result = "ok" if f["ok"] else f"FAILED: {f['problem']}"
            print(
                f"{name:<6}{f['seconds']:>9.2f}{f['events_per_s']:>12,.0f}{f['cpu_s']:>8.1f}"
                f"{f['peak_rss_mb']:>13.0f}{f['load_before']:>10.2f}/{f['load_after']:<8.2f}"
                f"  {result} ({f['count']:,} events)",
                flush=True,
            )


if __name__ == "__main__":
    main()
