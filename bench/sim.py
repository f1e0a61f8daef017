"""Simulator benchmark: transactions per second with no simulated delays.

The simulator runs as its own process (`p3log sim --time-scale 0 --scenario approve`,
with one reader per client), so its figures are not shared with the clients' CPU.
Each client is one `P3Client` session (connect, log in) running executes back to
back on its own reader: one update stream and final response each, contactless
approvals. Prints one row per transport and client count:

    python bench/sim.py [--transactions N] [--clients 1,50] [--transports ws,tcp]

`transactions` is per client. The clients share this process (one trio loop), so
with many clients the figure is bounded by both sides' CPU, not the simulator's
alone; latency is request to final response as one client sees it. Figures, not
assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import trio

from p3log.client import P3Client
from p3log.protocol.model import TransactionParameters


def start_sim(transport: str, readers: int, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    devices = workdir / f"devices-{readers}.toml"
    devices.write_text(
        "".join(f'[[devices]]\nidentifier = "reader{n}"\n\n' for n in range(readers)),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p3log",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--transport",
            transport,
            "--scenario",
            "approve",
            "--time-scale",
            "0",
            "--devices",
            str(devices),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"(ws|tcp)://\S+", line)
    if not found:
        process.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return process, found.group(0)


async def run_clients(url: str, clients: int, transactions: int) -> tuple[float, list[float]]:
    """Wall seconds for all clients, and every transaction's latency in ms."""
    latencies: list[float] = []

    async def client(number: int) -> None:
        async with P3Client.connect(url) as session:
            devices = await session.login(f"bench{number}", "secret")
            device = devices[number]
            for n in range(transactions):
                params = TransactionParameters(
                    amount=Decimal(f"{number + 1}.{n % 100:02d}"),
                    currency="EUR",
                    type="CHARGE",
                    auto_capture=True,
                )
                started = time.perf_counter()
                async with session.execute(device, params) as tx:
                    transaction = await tx.result()
                latencies.append((time.perf_counter() - started) * 1000)
                assert transaction.status == "APPROVED", transaction.status

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for number in range(clients):
            nursery.start_soon(client, number)
    return time.perf_counter() - started, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100, help="per client")
    parser.add_argument("--clients", default="1,50", help="comma-separated client counts")
    parser.add_argument("--transports", default="ws,tcp")
    args = parser.parse_args()
    counts = [int(part) for part in args.clients.split(",")]
    transports = args.transports.split(",")

    columns = ("clients", "tx", "seconds", "tx/s", "p50 ms", "p99 ms")
    print(f"{'transport':<10}" + "".join(f"{name:>9}" for name in columns))
    with tempfile.TemporaryDirectory() as tmp:
        for transport in transports:
            for clients in counts:
                process, url = start_sim(transport, max(clients, 1), Path(tmp))
                try:
                    elapsed, latencies = trio.run(run_clients, url, clients, args.transactions)
                finally:
                    process.terminate()
                    process.wait(timeout=10)
                total = len(latencies)
                print(
                    f"{transport:<10}{clients:>9}{total:>9}{elapsed:>9.2f}{total / elapsed:>9.0f}"
                    f"{percentile(latencies, 0.5):>9.2f}{percentile(latencies, 0.99):>9.2f}"
                )


if __name__ == "__main__":
    main()
