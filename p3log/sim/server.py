"""`serve_sim`: a simulated PayServer on a socket, until cancelled.

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_sim, SimConfig(time_scale=0), "127.0.0.1", 0, "ws")
        ...  # talk P3 to ws://127.0.0.1:{port}/
        nursery.cancel_scope.cancel()

One `PayServer` holds what all sessions share (busy devices, the transaction
registry, the scenario's rule cycle); each connection is a `Session` task owned by
the listener's nursery. Shutdown is cancellation: every session and operation
unwinds through its `finally` blocks.
"""

from __future__ import annotations

import trio

from p3log.net.channel import Channel, Transport, serve_channels
from p3log.sim.config import SimConfig
from p3log.sim.payserver import PayServer
from p3log.sim.session import Session

__all__ = ["SimConfig", "serve_sim"]


async def serve_sim(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    transport: Transport = "ws",
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve P3 on `host:port` (0 picks a free port) and report the bound port."""
    server = PayServer(config)

    async def serve_connection(channel: Channel) -> None:
        await Session(channel, server).run()

    await serve_channels(
        serve_connection, host, port, transport, config.dialect, task_status=task_status
    )
