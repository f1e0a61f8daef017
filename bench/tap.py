"""Tap benchmark: what recording costs a payment, old and new side by side in one run.

Paths, each relaying to the same echo server (bench/echo_server.py, its own process):
  direct              POS -> echo server
  bare relay          POS -> a trio-websocket relay that records nothing -> echo
  tap/<mode> <side>   POS -> p3log tap --durability <mode> -> echo, for journal and
                      fsync, old (a commit, default 44395e8) and new (this tree)

For each path: round trips of ~1 KB messages sent at a fixed rate (default 1,000 msg/s)
by a trio-websocket client in this process and by an independent client (the
`websockets` library on asyncio, its own process: bench/ws_client.py); the throughput
of 8 connections sending back to back; and, for a tap, the CPU it spent per event
during the fixed-rate run, from /proc (bench/procstat.py): its main thread (the event
loop) and the index work (the tap's other threads in the old layout, where DuckDB
runs in the tap; the tap's child processes in the new one, where `p3log index` does).
Each message is two events (the request and its echo). The CPU window starts 1 s
after a warm-up and ends `--cpu-settle` (2) s after the last reply, so an indexer that
works at a cadence is counted with the batch it took.

Then the tap's RSS after 10k messages and after N more (`--rss-messages`), and
`p3log sql`'s first answer on a store of `--sql-transactions` synthetic transactions
(bench/projections.py's, sessions that open and close as a POS's do) while a tap
records into it at the fixed rate.

    python bench/tap.py [--baseline 44395e8] [--rate 1000] [--seconds 5]
        [--rss-messages N] [--sql-transactions N]

Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import commands
import procstat
import trio
import trio_websocket
from baseline import BASELINE, Side, sides
from messages import message

# the working tree's reading of the store's files
from p3log.projections import snapshots
from p3log.store.segments import SEAL_EVENTS, sealed_segments, segments_dir

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
LISTENING = re.compile(r"listening on \w+://[^/]+:(\d+)/")
MODES = ("journal", "fsync")


@contextmanager
def process(
    argv: list[str], side: Side | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start a process, read its port from its "listening on" line, and keep reading
    its output (so that it never blocks on a full pipe); SIGTERM it at the end."""
    kwargs: dict[str, Any] = {"stdout": subprocess.PIPE}
    if side is None:
        proc = subprocess.Popen(argv, text=True, env={**os.environ, "COLUMNS": "300"}, **kwargs)
    else:
        proc = side.popen(argv, **kwargs)
    assert proc.stdout is not None
    port = None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        found = LISTENING.search(line)
        if found:
            port = int(found.group(1))
            break
    if port is None:
        proc.kill()
        raise SystemExit(f"{argv[:5]} did not start: {''.join(seen)!r}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def tap_argv(side: Side, upstream: str, store: Path, durability: str) -> list[str]:
    return side.p3log(
        *("tap", "--listen", "127.0.0.1:0", "--upstream", upstream),
        *("--store", str(store), "--durability", durability),
    )


# --- clients ----------------------------------------------------------------------------


async def fixed_rate(url: str, rate: int, seconds: float) -> list[float]:
    """Round trips (ms) of messages sent every 1/rate s, against absolute deadlines."""
    sent: dict[str, float] = {}
    rtts: list[float] = []
    count = int(rate * seconds)
    async with trio_websocket.open_websocket_url(url) as ws:

        async def receive() -> None:
            for _ in range(count):
                reply = await ws.get_message()
                tag = str(reply).split('"tag":"', 1)[1].split('"', 1)[0]
                rtts.append((time.perf_counter() - sent.pop(tag)) * 1000)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            start = trio.current_time()
            for n in range(count):
                await trio.sleep_until(start + n / rate)
                tag = f"t{n}"
                sent[tag] = time.perf_counter()
                await ws.send_message(message(n, tag).decode())
    return rtts


async def max_throughput(url: str, connections: int, seconds: float) -> float:
    done = 0
    deadline = trio.current_time() + seconds

    async def one(c: int) -> None:
        nonlocal done
        async with trio_websocket.open_websocket_url(url) as ws:
            n = 0
            while trio.current_time() < deadline:
                await ws.send_message(message(n, f"c{c}-{n}").decode())
                await ws.get_message()
                n += 1
                done += 1

    async with trio.open_nursery() as nursery:
        for c in range(connections):
            nursery.start_soon(one, c)
    return done / seconds


async def push(url: str, messages: int, connections: int = 8) -> None:
    per = messages // connections

    async def one(c: int) -> None:
        async with trio_websocket.open_websocket_url(url) as ws:
            window = 16  # keep a few messages in flight per connection
            for n in range(per):
                await ws.send_message(message(n, f"r{c}-{n}").decode())
                if n >= window:
                    await ws.get_message()
            for _ in range(min(window, per)):
                await ws.get_message()

    async with trio.open_nursery() as nursery:
        for c in range(connections):
            nursery.start_soon(one, c)


def ws_client_argv(url: str, rate: int, seconds: float) -> list[str]:
    return [PYTHON, str(HERE / "ws_client.py"), url, "--rate", str(rate), "--seconds", str(seconds)]


def independent(url: str, rate: int, seconds: float) -> dict[str, float]:
    """The websockets client's round trips (bench/ws_client.py, its own process)."""
    done = subprocess.run(ws_client_argv(url, rate, seconds), capture_output=True, text=True)
    if done.returncode != 0:  # reported, not raised: the path's other figures still count
        log(f"websockets client on {url} failed: {commands.last_error(done.stderr)}")
        nan = float("nan")
        return {"p50": nan, "p99": nan, "p999": nan, "count": 0}
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- one path ---------------------------------------------------------------------------


@dataclass
class PathFigures:
    label: str
    p50: float
    p99: float
    p999: float
    ws: dict[str, float]  # the independent client's p50/p99/p999
    throughput: float
    events: int = 0  # events the tap recorded in the CPU window
    cpu: procstat.CpuSample | None = None  # the tap's CPU in that window
    error: str = ""  # why the path could not be measured (then every figure is NaN)

    @classmethod
    def failed(cls, label: str, error: str) -> PathFigures:
        nan = float("nan")
        return cls(label, nan, nan, nan, {"p50": nan, "p99": nan, "p999": nan}, nan, error=error)

    @property
    def new_layout(self) -> bool:
        """An indexer child process did the index work (else: the tap's threads)."""
        return self.cpu is not None and bool(self.cpu.child_pids)

    def loop_us(self) -> float:
        return self.cpu.loop / self.events * 1e6 if self.cpu and self.events else float("nan")

    def index_us(self) -> float:
        if not self.cpu or not self.events:
            return float("nan")
        work = self.cpu.children if self.new_layout else self.cpu.threads
        return work / self.events * 1e6


def measure_path(label: str, url: str, pid: int | None, args: argparse.Namespace) -> PathFigures:
    """Warm up (imports, first DuckDB insert, caches), then measure."""
    trio.run(fixed_rate, url, args.rate, 1.0)
    time.sleep(1.0)
    before = procstat.sample(pid) if pid else None
    rtts = trio.run(fixed_rate, url, args.rate, args.seconds)
    time.sleep(args.cpu_settle)
    cpu = procstat.sample(pid) - before if pid and before else None
    ws = independent(url, args.rate, args.seconds)
    rate = trio.run(max_throughput, url, args.connections, args.seconds)
    return PathFigures(
        label,
        statistics.median(rtts),
        percentile(rtts, 0.99),
        percentile(rtts, 0.999),
        ws,
        rate,
        events=2 * len(rtts),
        cpu=cpu,
    )


@dataclass
class RssFigures:
    side: str
    after_10k: float
    after_n: float
    tree_after_10k: float  # the tap and its children (the new layout's indexer)
    tree_after_n: float
    messages: int
    seconds: float

    @property
    def ratio(self) -> float:
        return self.after_n / self.after_10k


def measure_rss(side: Side, upstream: str, store: Path, messages: int) -> RssFigures:
    with process(tap_argv(side, upstream, store, "journal"), side) as (tap, port):
        url = f"ws://127.0.0.1:{port}/"
        trio.run(push, url, 10_000)
        time.sleep(2.0)  # let an indexer working at a cadence take what is pending
        after_10k, tree_10k = procstat.rss_mb(tap.pid), procstat.tree_rss_mb(tap.pid)
        started = time.perf_counter()
        trio.run(push, url, messages)
        elapsed = time.perf_counter() - started
        time.sleep(2.0)
        after_n, tree_n = procstat.rss_mb(tap.pid), procstat.tree_rss_mb(tap.pid)
    shutil.rmtree(store, ignore_errors=True)
    return RssFigures(side.name, after_10k, after_n, tree_10k, tree_n, messages, elapsed)


def sealed_events(store: Path) -> int:
    """Events the store's sealed Parquet segments hold (what a live reader need not
    parse from the journal)."""
    covered = sealed_segments(store)
    return covered[-1].last_seq if covered else 0


def snapshot_events(store: Path) -> int:
    """Events the store's latest projection snapshot covers (what a live reader need
    not fold again)."""
    latest = snapshots._latest(segments_dir(store))  # the one reading of snapshot names
    return latest[1] if latest else 0


def level(store: Path, events: int) -> bool:
    """Whether a live reader of `store` finds it as a long-running tap leaves it: sealed
    and snapshotted up to the last interval."""
    return (
        sealed_events(store) >= events - SEAL_EVENTS
        and snapshot_events(store) >= events - snapshots.SNAPSHOT_EVENTS
    )


@dataclass
class SqlFigures:
    side: str
    seconds: float  # from starting `p3log sql` to its first line of output
    total_seconds: float  # to its exit
    answer: str  # the count it printed, or why it failed
    events: int  # in the store before the tap started
    sealed: int  # events in sealed segments when the query started
    snapshot: int  # events the latest projection snapshot covered then
    waited: float  # seconds the tap ran before the query started


def measure_sql(
    side: Side, upstream: str, store: Path, events: int, args: argparse.Namespace
) -> SqlFigures:
    """`p3log sql` on `store` while a tap records into it at the fixed rate: the tap
    starts, the load starts, and the query runs once the segments and the projections'
    snapshot cover the store as a long-running tap leaves them (a tap folds, seals
    and snapshots what it finds at start) or after `--sql-settle` seconds."""
    with process(tap_argv(side, upstream, store, "journal"), side) as (_, port):
        started = time.perf_counter()
        load = subprocess.Popen(
            ws_client_argv(f"ws://127.0.0.1:{port}/", args.rate, 3600),
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(3.0)
            while not level(store, events) and time.perf_counter() - started < args.sql_settle:
                time.sleep(1.0)
            waited = time.perf_counter() - started
            sealed, snapshot = sealed_events(store), snapshot_events(store)
            query = side.p3log(
                *("sql", "--store", str(store), "--format", "csv"), "SELECT count(*) FROM events"
            )
            t0 = time.perf_counter()
            sql = side.popen(query, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert sql.stdout is not None and sql.stderr is not None
            first = sql.stdout.readline()
            first_at = time.perf_counter() - t0
            rest, errors = sql.stdout.read(), sql.stderr.read()  # a few lines each
            sql.wait()
            total = time.perf_counter() - t0
            if sql.returncode == 0:
                answer = (first + rest).split()[-1]  # csv: a header, then the count
            else:  # a failure is a figure too: its last line says why
                answer = "failed: " + commands.last_error(errors)
                first_at = float("nan")
        finally:
            load.terminate()
            load.wait()
    return SqlFigures(side.name, first_at, total, answer, events, sealed, snapshot, waited)


# --- the run ----------------------------------------------------------------------------


@dataclass
class TapRun:
    paths: dict[str, PathFigures] = field(default_factory=dict)
    rss: dict[str, RssFigures] = field(default_factory=dict)
    sql: dict[str, SqlFigures] = field(default_factory=dict)
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0


def log(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(
    old: Side,
    new: Side,
    args: argparse.Namespace,
    work: Path,
    sql_stores: dict[str, tuple[Path, int]] | None = None,
) -> TapRun:
    """Every tap figure, old and new side by side. `sql_stores`: per side, a store of
    N events to measure `p3log sql` on (skipped without)."""
    result = TapRun(load_start=os.getloadavg())
    began = time.perf_counter()
    with process([PYTHON, str(HERE / "echo_server.py")]) as (_, echo_port):
        upstream = f"ws://127.0.0.1:{echo_port}/"
        log("direct")
        result.paths["direct"] = measure_path("direct", upstream, None, args)
        log("bare relay")
        with process([PYTHON, str(HERE / "bare_relay.py"), upstream]) as (_, port):
            result.paths["bare relay"] = measure_path(
                "bare relay", f"ws://127.0.0.1:{port}/", None, args
            )
        for mode in MODES:
            for side in (old, new):
                label = f"tap/{mode} {side.name}"
                log(label)
                store = work / f"tap-{mode}-{side.name}"
                try:
                    with process(tap_argv(side, upstream, store, mode), side) as (tap, port):
                        result.paths[label] = measure_path(
                            label, f"ws://127.0.0.1:{port}/", tap.pid, args
                        )
                except (Exception, SystemExit) as exc:  # the other paths are still worth having
                    log(f"{label} failed: {exc!r}")
                    result.paths[label] = PathFigures.failed(label, repr(exc)[:200])
                shutil.rmtree(store, ignore_errors=True)
        if args.rss_messages:
            for side in (old, new):
                log(f"RSS {side.name}: 10k + {args.rss_messages:,} messages")
                result.rss[side.name] = measure_rss(
                    side, upstream, work / f"rss-{side.name}", args.rss_messages
                )
        for side in (old, new):
            if sql_stores and side.name in sql_stores:
                store, events = sql_stores[side.name]
                log(f"p3log sql {side.name} on {events:,} events while a tap records")
                result.sql[side.name] = measure_sql(side, upstream, store, events, args)
    result.load_end = os.getloadavg()
    result.seconds = time.perf_counter() - began
    return result


def loadavg(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def report(run: TapRun, args: argparse.Namespace) -> None:
    direct, bare = run.paths["direct"], run.paths["bare relay"]
    print(
        f"\n~{len(message(0))} byte messages; fixed rate {args.rate} msg/s for {args.seconds:g} s "
        f"(trio client, and the websockets client in its own process); throughput with "
        f"{args.connections} connections; CPU per event from /proc ({args.rate * 2} events/s)"
    )
    print(
        f"{'path':<18}{'p50 ms':>8}{'p99 ms':>8}{'p99.9':>8}{'ws p50':>8}{'ws p99':>8}"
        f"{'msg/s':>8}{'p50 ovh/bare':>13}{'ws p99-dir':>11}{'tput/bare':>10}"
        f"{'loop µs/ev':>11}{'index µs/ev':>12}"
    )
    for figures in run.paths.values():
        overhead = (figures.p50 - direct.p50) / max(bare.p50 - direct.p50, 1e-9)
        index = figures.index_us()
        where = "" if figures.cpu is None else (" (child)" if figures.new_layout else " (thr)")
        print(
            f"{figures.label:<18}{figures.p50:>8.3f}{figures.p99:>8.3f}{figures.p999:>8.3f}"
            f"{figures.ws['p50']:>8.3f}{figures.ws['p99']:>8.3f}{figures.throughput:>8,.0f}"
            f"{overhead:>12.2f}x{figures.ws['p99'] - direct.ws['p99']:>11.3f}"
            f"{figures.throughput / bare.throughput:>10.0%}{figures.loop_us():>11.1f}"
            f"{index:>12.1f}{where}"
        )
    print(
        "index µs/ev: (thr) the tap's threads other than the event loop (old layout); "
        "(child) the tap's child processes (new layout)"
    )
    for rss in run.rss.values():
        print(
            f"tap RSS {rss.side}: {rss.after_10k:.0f} MB after 10k messages, {rss.after_n:.0f} MB "
            f"after {rss.messages:,} more ({rss.ratio:.2f}x; {rss.messages / rss.seconds:,.0f} "
            f"msg/s); with its children {rss.tree_after_10k:.0f} -> {rss.tree_after_n:.0f} MB"
        )
    for sql in run.sql.values():
        print(
            f"p3log sql {sql.side} on {sql.events:,} events while a tap records: first line "
            f"after {sql.seconds:.2f} s, exit after {sql.total_seconds:.2f} s "
            f"(count {sql.answer}; {sql.sealed:,} events sealed in segments, {sql.snapshot:,} "
            f"in the projections' snapshot; "
            f"the tap had run {sql.waited:.0f} s)"
        )
    print(
        f"load average: {loadavg(run.load_start)} at start, {loadavg(run.load_end)} at end "
        f"({os.cpu_count()} CPUs); {run.seconds:.0f} s"
    )


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=int, default=1000, help="msg/s of the fixed-rate runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--rss-messages", type=int, default=300_000, help="messages after the first 10k (0: skip)"
    )
    parser.add_argument(
        "--cpu-settle",
        type=float,
        default=2.0,
        help="seconds after the fixed-rate run that still count towards its CPU (an indexer "
        "working at a cadence takes the last batch then)",
    )
    parser.add_argument(
        "--sql-settle",
        type=float,
        default=300.0,
        help="at most this many seconds for the tap to seal and snapshot the store "
        "before the query",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--baseline", default=BASELINE, help="the old side's commit")
    add_options(parser)
    parser.add_argument(
        "--sql-transactions",
        type=int,
        default=0,
        help="p3log sql on a store of N synthetic transactions, ~8 events each (0: skip)",
    )
    args = parser.parse_args()
    old, new = sides(args.baseline)
    print(f"old: {old.describe}; new: {new.describe}")
    with tempfile.TemporaryDirectory(prefix="p3log-bench-tap-") as tmp:
        work = Path(tmp)
        stores = None
        if args.sql_transactions:
            template, events = commands.generated_store(
                old, work / "transactions", args.sql_transactions
            )
            made = commands.copies(template, work, (old, new))
            stores = {side: (path, events) for side, path in made.items()}
        report(run(old, new, args, work, stores), args)


if __name__ == "__main__":
    main()
