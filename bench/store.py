"""Store benchmark: N synthetic ~1 KB events through the real write path.

Prints, side by side from one run:
  - sustained events/s through redaction + hashing + journal + batched DuckDB
    inserts (the trio index writer, as the tap runs it);
  - the ceiling: one bare Arrow insert of the same rows into DuckDB, and the ratio;
  - `verify` over the whole store;
  - peak RSS of each phase (each phase runs in its own process);
  - `p3log import` of N ~1 KB events: events/s and CPU µs per event, the old code
    (`--old`, a checkout of an older commit) and this one side by side (bench/imports.py);
  - redaction: CPU µs per message and MB/s, realistic and worst-case (1 MiB) inputs, the
    redactor alone and the whole door (bench/redaction.py).

    python bench/store.py [--events N] [--dir DIR] [--old CHECKOUT]
    python bench/store.py --redaction-only [--baseline OLD_REDACT_PY]

Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from imports import print_comparison
from messages import message
from redaction import print_rows, rows

from p3log.store.index import connect, create_schema, insert_table, records_table
from p3log.store.indexer import keep_up
from p3log.store.journal import segment_paths
from p3log.store.log import EventLog
from p3log.store.verify import verify_store


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _write(root: Path, count: int) -> None:
    """Record as an in-process recorder does: journal on the calling task, the index
    following the journal at its cadence on a worker thread."""
    with EventLog.open(root) as log:
        assert log.indexer is not None
        async with trio.open_nursery() as nursery:
            await nursery.start(keep_up, log.indexer)
            for n in range(count):
                log.record_message(f"s{n % 50}", "server", message(n))
                if n % 1000 == 0:
                    await trio.sleep(0)  # the tap yields at every read; let the writer run
            nursery.cancel_scope.cancel()


def phase_write(root: Path, count: int) -> dict[str, float]:
    started = time.perf_counter()
    trio.run(_write, root, count)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "events_per_s": count / elapsed, "rss_mb": peak_rss_mb()}


def phase_ceiling(root: Path, count: int) -> dict[str, float]:
    """The rows the write phase journaled, already in one Arrow table: only DuckDB's
    insert of them into an empty index is timed."""
    lines = [
        line
        for path in segment_paths(root / "journal")
        for line in path.read_bytes().splitlines(True)
    ]
    table = records_table(lines)
    del lines
    con = connect(root / "ceiling.duckdb")
    create_schema(con)
    started = time.perf_counter()
    insert_table(con, table)
    elapsed = time.perf_counter() - started
    con.close()
    return {"seconds": elapsed, "events_per_s": count / elapsed, "rss_mb": peak_rss_mb()}


def phase_verify(root: Path, count: int) -> dict[str, float]:
    started = time.perf_counter()
    report = verify_store(root)
    elapsed = time.perf_counter() - started
    if not report.ok or report.count != count:
        raise SystemExit(f"verify failed: {report}")
    return {"seconds": elapsed, "events_per_s": count / elapsed, "rss_mb": peak_rss_mb()}


PHASES = {"write": phase_write, "ceiling": phase_ceiling, "verify": phase_verify}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--redaction-only", action="store_true", help="only the redaction rows")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="an older redact.py to time beside it"
    )
    parser.add_argument(
        "--old", default=None, help="a checkout of older code, to import beside this one"
    )
    args = parser.parse_args()

    if args.redaction_only:
        print_rows(rows(args.baseline))
        return

    if args.phase:  # child process: one phase, figures as JSON on stdout
        print(json.dumps(PHASES[args.phase](args.dir, args.events)))
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp) / "store"
        print(f"{args.events:,} events of {len(message(0))} bytes; store in {root}")
        results = {}
        for phase in ("write", "verify", "ceiling"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--phase",
                    phase,
                    "--events",
                    str(args.events),
                    "--dir",
                    str(root),
                ],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            ).stdout
            results[phase] = json.loads(out)
        journal_mb = sum(p.stat().st_size for p in (root / "journal").glob("*")) / 2**20
        index_mb = (root / "index.duckdb").stat().st_size / 2**20

    write, ceiling, verify = results["write"], results["ceiling"], results["verify"]
    print(f"{'phase':<42}{'seconds':>9}{'events/s':>12}{'peak RSS MB':>13}")
    for label, figures in (
        ("write path (redact, chain, journal, index)", write),
        ("bare Arrow insert of the same rows", ceiling),
        ("verify (journal and index)", verify),
    ):
        seconds, rate, rss = figures["seconds"], figures["events_per_s"], figures["rss_mb"]
        print(f"{label:<42}{seconds:>9.2f}{rate:>12,.0f}{rss:>13.0f}")
    print(f"write path / ceiling: {write['events_per_s'] / ceiling['events_per_s']:.2f}")
    print(f"on disk: journal {journal_mb:,.0f} MB, index {index_mb:,.0f} MB")
    print()
    print_comparison(args.events, args.old)
    print()
    print_rows(rows(args.baseline))


if __name__ == "__main__":
    main()
