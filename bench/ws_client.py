"""An independent client for the tap benchmark: the `websockets` library on asyncio,
in its own process, so that neither trio nor trio-websocket (what the tap and the
bare relay are built on) is on the measuring side.

Sends ~1 KB messages at a fixed rate against absolute deadlines and prints, as JSON,
the round trips' p50/p99/p99.9 in ms and how many there were.

    python bench/ws_client.py URL --rate 1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from messages import message
from websockets.asyncio.client import connect


async def fixed_rate(url: str, rate: int, seconds: float) -> list[float]:
    count = int(rate * seconds)
    sent: dict[str, float] = {}
    rtts: list[float] = []
    # no keepalive pings: behind a queue (a tap in fsync mode on a busy machine) a pong
    # can take longer than the ping timeout, and the latency is what is measured here
    async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:

        async def receive() -> None:
            for _ in range(count):
                reply = await ws.recv()
                tag = str(reply).split('"tag":"', 1)[1].split('"', 1)[0]
                rtts.append((time.perf_counter() - sent.pop(tag)) * 1000)

        receiving = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(count):
            delay = start + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tag = f"w{n}"
            sent[tag] = time.perf_counter()
            await ws.send(message(n, tag).decode())
        await receiving
    return rtts


def summary(rtts: list[float]) -> dict[str, float]:
    ordered = sorted(rtts)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "count": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(fixed_rate(args.url, args.rate, 1.0))  # warm-up
    print(json.dumps(summary(asyncio.run(fixed_rate(args.url, args.rate, args.seconds)))))


if __name__ == "__main__":
    main()
