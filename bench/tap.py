"""Tap benchmark: what recording costs a payment, measured side by side in one run.

Paths, each relaying to the same echo server (a separate process):
  direct        POS -> echo server
  bare relay    POS -> a trio-websocket relay that records nothing -> echo
  tap/<mode>    POS -> p3log tap --durability <mode> -> echo

For each: round-trip latency of ~1 KB messages sent at a fixed rate (p50/p99/p99.9),
and the maximum throughput of several connections sending back to back. Then the
tap's RSS after 10k and after N messages (default 1M; --rss-messages).

    python bench/tap.py [--rate 1000] [--seconds 5] [--rss-messages 1000000]
                        [--modes journal,fsync,async] [--window 1] [--old CHECKOUT]

--old runs each tap mode a second time from another checkout of p3log (e.g. `git
worktree add /tmp/p3log-old <commit>`), in the same run, for old/new side by side.
--window is how many messages each throughput connection keeps in flight.

Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
import trio_websocket
from messages import message

HERE = Path(__file__).resolve().parent


@contextmanager
def process(
    *argv: str, ready: str, code: str | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start a helper process and read its port from the first line matching `ready`;
    `code` is a p3log checkout to run instead of the installed one."""
    env = {**os.environ, "COLUMNS": "300", **({"PYTHONPATH": code} if code else {})}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(ready, line)
    if found is None:
        proc.kill()
        raise SystemExit(f"{argv[:4]} did not start: {line!r}")
    try:
        yield proc, int(found.group(1))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


async def max_throughput(url: str, connections: int, seconds: float, window: int) -> float:
    done = 0
    deadline = trio.current_time() + seconds

    async def one(c: int) -> None:
        nonlocal done
        async with trio_websocket.open_websocket_url(url) as ws:
            sent = received = 0
            while trio.current_time() < deadline:
                await ws.send_message(message(sent, f"c{c}-{sent}").decode())
                sent += 1
                if sent - received >= window:  # `window` messages in flight
                    await ws.get_message()
                    received += 1
                    done += 1
            for _ in range(sent - received):
                await ws.get_message()

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


def tap_argv(upstream: str, store: str, durability: str) -> list[str]:
    return [
        *(sys.executable, "-m", "p3log", "tap", "--listen", "127.0.0.1:0"),
        *("--upstream", upstream, "--store", store, "--durability", durability),
    ]


def measure(url: str, args: argparse.Namespace) -> tuple[list[float], float]:
    """Warm up (imports, first DuckDB insert, JIT-less caches), then measure."""
    trio.run(fixed_rate, url, args.rate, 1.0)
    rtts = trio.run(fixed_rate, url, args.rate, args.seconds)
    rate = trio.run(max_throughput, url, args.connections, args.seconds, args.window)
    return rtts, rate


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rss-messages", type=int, default=1_000_000)
    parser.add_argument("--modes", default="journal,fsync,async")
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--old", metavar="CHECKOUT", help="also run each tap mode from here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    python = sys.executable
    port_line = r"listening on \w+://[^/]+:(\d+)/"

    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        process(python, str(HERE / "echo_server.py"), ready=port_line) as (_, echo_port),
    ):
        upstream = f"ws://127.0.0.1:{echo_port}/"
        checkouts = [("", None)] + ([("old ", args.old)] if args.old else [])
        paths: list[tuple[str, list[str] | None, str | None]] = [
            ("direct", None, None),
            ("bare relay", [python, str(HERE / "bare_relay.py"), upstream], None),
        ] + [
            (f"{old}tap/{mode}", tap_argv(upstream, f"{tmp}/{old}{mode}", mode), code)
            for mode in args.modes.split(",")
            for old, code in checkouts
        ]
        for label, argv, code in paths:
            if argv is None:
                rtts, rate = measure(upstream, args)
            else:
                with process(*argv, ready=port_line, code=code) as (_, port):
                    rtts, rate = measure(f"ws://127.0.0.1:{port}/", args)
            rows.append(
                (
                    label,
                    statistics.median(rtts),
                    percentile(rtts, 0.99),
                    percentile(rtts, 0.999),
                    rate,
                )
            )
            print(f"  measured {label}", file=sys.stderr)

        rss = None
        if args.rss_messages:
            argv = tap_argv(upstream, f"{tmp}/rss", "journal")
            with process(*argv, ready=port_line) as (tap, port):
                url = f"ws://127.0.0.1:{port}/"
                trio.run(push, url, 10_000)
                after_10k = rss_mb(tap.pid)
                started = time.perf_counter()
                trio.run(push, url, args.rss_messages)
                elapsed = time.perf_counter() - started
                rss = (after_10k, rss_mb(tap.pid), elapsed)

    direct = rows[0]
    bare = rows[1]
    print(
        f"\n~{len(message(0))} byte messages; fixed rate {args.rate} msg/s for {args.seconds:g} s; "
        f"throughput with {args.connections} connections, {args.window} in flight each; "
        f"load average {' '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} after"
    )
    print(
        f"{'path':<16}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'msg/s':>10}"
        f"{'overhead p50 vs bare':>22}{'p99 - bare':>12}{'msg/s vs bare':>15}"
    )
    for label, p50, p99, p999, rate in rows:
        overhead = (p50 - direct[1]) / max(bare[1] - direct[1], 1e-9)
        print(
            f"{label:<16}{p50:>9.3f}{p99:>9.3f}{p999:>10.3f}{rate:>10,.0f}"
            f"{overhead:>21.2f}x{p99 - bare[2]:>11.3f}{rate / bare[4]:>14.0%}"
        )
    if rss is not None:
        after_10k, after_n, elapsed = rss
        ratio, speed = after_n / after_10k, args.rss_messages / elapsed
        print(
            f"tap RSS: {after_10k:.0f} MB after 10k messages, {after_n:.0f} MB after "
            f"{args.rss_messages:,} more ({ratio:.2f}x; {speed:,.0f} msg/s)"
        )


if __name__ == "__main__":
    main()
