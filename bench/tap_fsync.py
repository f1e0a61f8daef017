"""fsync mode's grouping: how many events share one fdatasync, and at what throughput.

The tap runs in this process (`run_tap`, a real journal) in front of an echo server,
with the journal's fsync counted; connections keep `--window` ~1 KB messages in
flight for `--seconds`. To measure another checkout (the old code) side by side, run
the same command with PYTHONPATH pointing at it:

    python bench/tap_fsync.py [--connections 1] [--window 16] [--seconds 5]
    PYTHONPATH=/tmp/p3log-old python bench/tap_fsync.py ...

Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import trio
import trio_websocket
from echo_server import echo
from messages import message

import p3log
from p3log.store.log import EventLog
from p3log.tap.durability import Durability
from p3log.tap.server import TapConfig, run_tap


async def pipelined(url: str, c: int, window: int, deadline: float) -> int:
    """Round trips done by one connection keeping `window` messages in flight."""
    async with trio_websocket.open_websocket_url(url) as ws:
        sent = received = 0
        while trio.current_time() < deadline:
            await ws.send_message(message(sent, f"c{c}-{sent}").decode())
            sent += 1
            if sent - received >= window:
                await ws.get_message()
                received += 1
        for _ in range(sent - received):
            await ws.get_message()
        return received


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, EventLog.open(Path(tmp) / "store") as log:
        syncs = 0
        sync = log.sync

        def counted() -> None:
            nonlocal syncs
            sync()
            syncs += 1

        log.sync = counted  # type: ignore[method-assign]
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_websocket.serve_websocket, echo, "127.0.0.1", 0, None)
            config = TapConfig(
                upstream=f"ws://127.0.0.1:{server.port}/", durability=Durability.fsync
            )
            url = f"ws://127.0.0.1:{await nursery.start(run_tap, config, log, stop)}/"
            head, cpu, synced = log.head[0], time.process_time(), syncs
            deadline = trio.current_time() + args.seconds
            done: list[int] = []

            async def one(c: int) -> None:
                done.append(await pipelined(url, c, args.window, deadline))

            async with trio.open_nursery() as load:
                for c in range(args.connections):
                    load.start_soon(one, c)
            events, fsyncs = log.head[0] - head, syncs - synced
            cpu_us = (time.process_time() - cpu) * 1e6 / max(events, 1)
            stop.set()
            nursery.cancel_scope.cancel()
    print(
        f"{p3log.__file__}: {args.connections} connections, {args.window} in flight each: "
        f"{sum(done) / args.seconds:,.0f} round trips/s, {events:,} events, {fsyncs:,} "
        f"fsyncs ({events / max(fsyncs, 1):.1f} events each), {cpu_us:.0f} µs CPU per "
        f"event (this whole process); load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    trio.run(main, parser.parse_args())
