"""Issue 13's table, old and new measured side by side in one run.

"old" is a commit (default 44395e8, where the issue measured "today"), checked out
outside the repo (bench/baseline.py); "new" is this working tree. Every figure runs
p3log as a subprocess of its side, through its commands (`p3log tap`, `import`,
`verify`, `rebuild`, `sql`), so the same harness measures both layouts: DuckDB in the
tap (old) and an indexer child process (new). In order:

  1. `p3log import` of N events of ~1 KB (--events, default 1M) into a fresh store
     per side; 2. `p3log verify` of that store;
  3. stores of --small-transactions and --transactions synthetic transactions
     (~8 events each), generated once by the old side's bench/projections.py;
  4. the tap figures (bench/tap.py: latency, throughput, CPU per event from /proc,
     RSS after --rss-messages), and `p3log sql`'s first answer on a copy of the
     large store per side while a tap records into it (200k transactions are 1.6M
     events: the issue's "1M-event store", with sessions that close as a POS's do);
  5. `p3log rebuild` of both stores, the rate at the large one against the small.

Then the table: figure | issue's "today" | old | new | target | moonshot | verdict (of
the new figure), the notes that say what was measured and why a target was missed,
and the load average at start and end, because this machine is shared.

    python bench/issue13.py [--quick] [--baseline COMMIT] [--events N]
        [--transactions N] [--small-transactions N] [--rss-messages N] [--work DIR]

`--work DIR` keeps the inputs (import file, generated stores) there for the next run.
Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import commands
import tap
from baseline import BASELINE, sides
from commands import Timed
from inputs import write_import_file

ISSUE_EVENTS = 1_000_000
QUICK = {
    "events": 30_000,
    "transactions": 2_000,
    "small_transactions": 500,
    "rss_messages": 5_000,
    "seconds": 1.0,
    "sql_settle": 30.0,
}


@dataclass(frozen=True)
class Row:
    figure: str
    today: str  # the issue's figure for today
    old: str
    new: str
    target: str
    moonshot: str
    verdict: str
    note: str = ""


def verdict(value: float, target: float, moonshot: float, higher_is_better: bool) -> str:
    if value != value:  # NaN: not measured
        return "not measured"

    def meets(bound: float) -> bool:
        return value >= bound if higher_is_better else value <= bound

    if meets(moonshot):
        return "moonshot met"
    return "target met" if meets(target) else "NOT met"


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table, then each row's note under its number."""
    header = ("#", "figure", "issue: today", "old", "new", "target", "moonshot", "new:")
    cells = [header] + [
        (str(n), r.figure, r.today, r.old, r.new, r.target, r.moonshot, r.verdict)
        for n, r in enumerate(rows, start=1)
    ]
    widths = [max(len(line[c]) for line in cells) for c in range(len(header))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(values) for values in cells[1:]]
    notes = [f"{n}. {r.note}" for n, r in enumerate(rows, start=1) if r.note]
    return "\n".join([*out, "", *notes] if notes else out)


def _busy(load: float) -> str:
    cpus = os.cpu_count() or 1
    return f"; load {load:.1f} on {cpus} CPUs: a busy machine" if load > cpus else ""


def _timed_note(t: Timed, what: str = "") -> str:
    name = f"{t.side} {what}".strip()
    if t.error:
        return f"{name} FAILED ({t.error})"
    return (
        f"{name} {t.seconds:.1f} s wall, {t.cpu:.1f} s CPU "
        f"({t.cpu / t.seconds:.0%} of one core){_busy(t.load)}"
    )


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def _percent(value: float) -> str:
    return f"{value:.0%}"


def tap_rows(run: tap.TapRun) -> list[Row]:
    direct, bare = run.paths["direct"], run.paths["bare relay"]
    journal = {side: run.paths[f"tap/journal {side}"] for side in ("old", "new")}
    fsync = {side: run.paths[f"tap/fsync {side}"] for side in ("old", "new")}

    def overhead(p: tap.PathFigures) -> float:
        return (p.p50 - direct.p50) / max(bare.p50 - direct.p50, 1e-9)

    def cpu_note(p: tap.PathFigures) -> str:
        if p.error:
            return f"{p.label} FAILED: {p.error}"
        return (
            f"{p.label}: loop {p.loop_us():.0f} µs/event, index {p.index_us():.0f} µs/event "
            f"({'child processes' if p.new_layout else 'tap threads'})"
        )

    rows = []
    busy = _busy(max(run.load_start[0], run.load_end[0]))

    def add(
        figure: str,
        today: str,
        value: Callable[[tap.PathFigures], float],
        paths: dict[str, tap.PathFigures],
        show: Callable[[float], str],
        target: tuple[str, float] | None,
        moonshot: tuple[str, float] | None,
        higher: bool,
        note: str,
    ) -> None:
        old, new = value(paths["old"]), value(paths["new"])
        if target is None or moonshot is None:
            v, target, moonshot = "reported", ("report it", 0.0), ("-", 0.0)
        else:
            v = verdict(new, target[1], moonshot[1], higher)
        why = f"; missed: {cpu_note(paths['new'])}{busy}" if v == "NOT met" else ""
        why += "".join(f"; {cpu_note(p)}" for p in paths.values() if p.error)
        rows.append(Row(figure, today, show(old), show(new), target[0], moonshot[0], v, note + why))

    add(
        "tap journal, p50 overhead over direct ÷ bare relay's",
        "2.8-2.9x",
        overhead,
        journal,
        _ratio,
        ("≤ 1.3x", 1.3),
        ("≤ 1.1x", 1.1),
        False,
        f"p50 direct {direct.p50:.3f} ms, bare relay {bare.p50:.3f} ms, tap old "
        f"{journal['old'].p50:.3f} / new {journal['new'].p50:.3f} ms (trio client)",
    )
    add(
        "tap journal, throughput vs bare relay (8 conn.)",
        "41-46 %",
        lambda p: p.throughput / bare.throughput,
        journal,
        _percent,
        ("≥ 80 %", 0.8),
        ("≥ 95 %", 0.95),
        True,
        f"bare relay {bare.throughput:,.0f} msg/s, tap old {journal['old'].throughput:,.0f} / "
        f"new {journal['new'].throughput:,.0f}",
    )
    add(
        "tap p99 added over direct, websockets client",
        "> 2 ms",
        lambda p: p.ws["p99"] - direct.ws["p99"],
        journal,
        lambda v: f"{v:.2f} ms",
        ("≤ 1 ms", 1.0),
        ("≤ 0.5 ms", 0.5),
        False,
        f"journal mode; websockets p99: direct {direct.ws['p99']:.3f} ms, bare relay "
        f"{bare.ws['p99']:.3f} ms",
    )
    add(
        "indexer CPU per event at 1,000 msg/s",
        "234-338 µs",
        lambda p: p.index_us(),
        journal,
        lambda v: f"{v:.0f} µs",
        ("≤ 30 µs", 30.0),
        ("≤ 10 µs", 10.0),
        False,
        f"from /proc, {journal['new'].events:,} events in the window; "
        f"{cpu_note(journal['old'])}; {cpu_note(journal['new'])}",
    )
    add(
        "tap event-loop CPU per event at 1,000 msg/s",
        "~55 µs + relay",
        lambda p: p.loop_us(),
        journal,
        lambda v: f"{v:.0f} µs",
        None,
        None,
        False,
        "the tap's main thread (trio); the issue: relay machinery ~110 µs per message "
        "(as in the bare relay), recording ~55 µs",
    )
    add(
        "tap fsync throughput vs bare relay",
        "17 %",
        lambda p: p.throughput / bare.throughput,
        fsync,
        _percent,
        ("≥ 50 %", 0.5),
        ("≥ 80 %", 0.8),
        True,
        f"tap/fsync round trip at the fixed rate: p50 old "
        f"{fsync['old'].p50:.2f} / new {fsync['new'].p50:.2f} ms, p99 old "
        f"{fsync['old'].p99:.2f} / new {fsync['new'].p99:.2f} ms",
    )
    if run.rss:
        old, new = run.rss["old"], run.rss["new"]
        rows.append(
            Row(
                f"tap RSS after {new.messages:,} messages ÷ after 10k",
                "1.37x (1M)",
                _ratio(old.ratio),
                _ratio(new.ratio),
                "≤ 1.2x",
                "1.0x",
                verdict(new.ratio, 1.2, 1.0, False),
                f"tap alone: old {old.after_10k:.0f} -> {old.after_n:.0f} MB, new "
                f"{new.after_10k:.0f} -> {new.after_n:.0f} MB; with child processes: old "
                f"{old.tree_after_10k:.0f} -> {old.tree_after_n:.0f}, new "
                f"{new.tree_after_10k:.0f} -> {new.tree_after_n:.0f} MB; push rate old "
                f"{old.messages / old.seconds:,.0f} / new {new.messages / new.seconds:,.0f} msg/s"
                + ("" if new.messages == ISSUE_EVENTS else "; the issue asks 1M (--rss-messages)"),
            )
        )
    return rows


def store_rows(
    imports: dict[str, Timed],
    verifies: dict[str, Timed],
    rebuilds: dict[str, dict[str, Timed]],
    run: tap.TapRun,
    args: argparse.Namespace,
) -> list[Row]:
    rows = []
    events = imports["new"].events
    scaled = "" if events == ISSUE_EVENTS else f"; the issue asks {ISSUE_EVENTS:,}"
    rate = {side: t.rate for side, t in imports.items()}
    rows.append(
        Row(
            f"p3log import, {events:,} events of ~1 KB",
            "12-21k events/s",
            f"{rate['old'] / 1000:.1f}k/s",
            f"{rate['new'] / 1000:.1f}k/s",
            "≥ 50k/s",
            "≥ 100k/s",
            verdict(rate["new"], 50_000, 100_000, True),
            "; ".join(_timed_note(t) for t in imports.values()) + scaled,
        )
    )
    at_million = {side: t.seconds * ISSUE_EVENTS / t.events for side, t in verifies.items()}
    rows.append(
        Row(
            f"verify, {events:,} events" + ("" if events == ISSUE_EVENTS else " (s scaled to 1M)"),
            "19.5 s",
            f"{at_million['old']:.1f} s",
            f"{at_million['new']:.1f} s",
            "≤ 8 s",
            "≤ 5 s",
            verdict(at_million["new"], 8.0, 5.0, False),
            "; ".join(_timed_note(t) for t in verifies.values()) + scaled,
        )
    )
    large, small = rebuilds["large"], rebuilds["small"]
    ratio = large["new"].rate / small["new"].rate
    met = verdict(large["new"].rate, 60_000, 200_000, True)
    if met != "NOT met" and ratio < 0.9:
        met = "NOT met"  # "the same rate": within 10 % of the small store's
    rows.append(
        Row(
            f"rebuild, events/s at {args.transactions:,} tx vs {args.small_transactions:,}",
            "19k vs 45k (1M tx vs 20k)",
            f"{large['old'].rate / 1000:.0f}k vs {small['old'].rate / 1000:.0f}k",
            f"{large['new'].rate / 1000:.0f}k vs {small['new'].rate / 1000:.0f}k",
            "same rate, ≥ 60k/s",
            "≥ 200k/s",
            met,
            f"stores of {large['new'].events:,} and {small['new'].events:,} events; "
            f"new large/small {ratio:.2f} (same rate: ≥ 0.90); "
            + "; ".join(
                _timed_note(t, size) for size, by_side in rebuilds.items() for t in by_side.values()
            )
            + (
                ""
                if args.transactions == ISSUE_EVENTS
                else "; the issue asks 1M transactions (--transactions)"
            ),
        )
    )
    if run.sql:
        sql = run.sql
        rows.append(
            Row(
                f"p3log sql first answer, {sql['new'].events:,} events, tap recording",
                "not measured",
                f"{sql['old'].seconds:.2f} s",
                f"{sql['new'].seconds:.2f} s",
                "report it",
                "≤ 2 s",
                "moonshot met" if sql["new"].seconds <= 2 else "reported",
                "; ".join(
                    f"{s.side}: exit after {s.total_seconds:.2f} s, count {s.answer}, "
                    f"{s.sealed:,} events sealed in segments and {s.snapshot:,} in the "
                    f"projections' snapshot, tap running {s.waited:.0f} s"
                    for s in sql.values()
                ),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--baseline", default=BASELINE, help="the old side's commit")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    parser.add_argument("--events", type=int, default=ISSUE_EVENTS, help="import, verify")
    parser.add_argument(
        "--transactions", type=int, default=200_000, help="rebuild, large; sql while a tap records"
    )
    parser.add_argument("--small-transactions", type=int, default=20_000, help="rebuild, small")
    parser.add_argument("--work", type=Path, default=None, help="keep the inputs here")
    tap.add_options(parser)
    args = parser.parse_args()
    if args.quick:
        for option, value in QUICK.items():
            if parser.get_default(option) == getattr(args, option):
                setattr(args, option, value)

    began = time.perf_counter()
    load_start = os.getloadavg()
    old, new = sides(args.baseline)
    both = (old, new)
    print(f"old: {old.describe} ({old.root}); new: {new.describe}")
    print(
        f"sizes: {args.events:,} events (import, verify); rebuild at {args.transactions:,} "
        f"(also sql) and {args.small_transactions:,} transactions; tap RSS after "
        f"10k + {args.rss_messages:,} messages; {args.seconds:g} s per tap run at {args.rate} msg/s"
    )
    temporary = args.work is None
    work = Path(tempfile.mkdtemp(prefix="p3log-issue13-")) if temporary else args.work
    work.mkdir(parents=True, exist_ok=True)
    parts: dict[str, float] = {}

    def part(name: str, since: float) -> float:
        now = time.perf_counter()
        parts[name] = now - since
        return now

    try:
        t = time.perf_counter()
        source = write_import_file(work / f"events-{args.events}.jsonl", args.events)
        t = part("import file", t)
        imported = {side.name: work / f"imported-{side.name}" for side in both}
        imports = {
            side.name: commands.import_events(side, source, imported[side.name], args.events)
            for side in both
        }
        t = part("import", t)
        verifies = {
            side.name: commands.verify(side, imported[side.name], args.events) for side in both
        }
        t = part("verify", t)
        for store in imported.values():
            shutil.rmtree(store, ignore_errors=True)
        generated = {
            size: commands.generated_store(old, work / f"transactions-{count}", count)
            for size, count in (("small", args.small_transactions), ("large", args.transactions))
        }
        t = part("generating the rebuild's stores", t)
        # `p3log sql` while a tap records: on copies of the large store (its sessions open
        # and close as a POS's do, so a live reader starts from a snapshot as it would on
        # a tap's store), one per side, as each side's tap leaves it
        copied = commands.copies(generated["large"][0], work, both)
        sql_stores = {name: (path, generated["large"][1]) for name, path in copied.items()}
        run = tap.run(old, new, args, work, sql_stores)
        t = part("tap and sql", t)
        for store, _ in sql_stores.values():
            shutil.rmtree(store, ignore_errors=True)
        rebuilds = {
            size: {side.name: commands.rebuild(side, store, events) for side in both}
            for size, (store, events) in generated.items()
        }
        part("rebuild", t)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)

    tap.report(run, args)
    print()
    print(format_table(tap_rows(run) + store_rows(imports, verifies, rebuilds, run, args)))
    print()
    print(
        f"load average (1, 5, 15 min): {tap.loadavg(load_start)} at start, "
        f"{tap.loadavg(os.getloadavg())} at end ({os.cpu_count()} CPUs)"
    )
    print(
        "time: "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in parts.items())
        + f"; total {time.perf_counter() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
