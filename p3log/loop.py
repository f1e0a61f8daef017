"""The whole recording loop in one process: simulator, tap and scripted POS.

`p3log demo` and `make fixtures` run a POS script through a real tap to a real
simulator, over real sockets on 127.0.0.1, so what they record is exactly what a
tap in a shop would record.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from p3log.net.channel import Transport
from p3log.pos.runner import DEMO_MERCHANT_SECRET, StepResult, run_script
from p3log.pos.script import Script
from p3log.sim.config import SimConfig
from p3log.sim.server import serve_sim
from p3log.store.log import EventLog
from p3log.tap.server import TapConfig, run_tap


def _url(transport: Transport, port: int) -> str:
    return f"ws://127.0.0.1:{port}/" if transport == "ws" else f"tcp://127.0.0.1:{port}"


async def run_through_tap(
    log: EventLog,
    script: Script,
    sim: SimConfig,
    *,
    transport: Transport = "ws",
    on_result: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run `script` against a simulator through a tap recording into `log`."""
    async with trio.open_nursery() as servers:
        sim_port = await servers.start(serve_sim, sim, "127.0.0.1", 0, transport)
        stop = trio.Event()
        async with trio.open_nursery() as tapping:
            tap_config = TapConfig(
                upstream=_url(transport, sim_port), transport=transport, dialect=sim.dialect
            )
            tap_port = await tapping.start(run_tap, tap_config, log, stop)
            try:
                results = await run_script(
                    script,
                    _url(transport, tap_port),
                    secret=DEMO_MERCHANT_SECRET,
                    dialect=sim.dialect,
                    on_result=on_result,
                )
            finally:
                stop.set()  # the tap closes its sessions and flushes, then returns
        servers.cancel_scope.cancel()
    return results
