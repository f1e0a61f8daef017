"""Simulators on real sockets (127.0.0.1, a free port), over both transports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from p3log.net.channel import Transport
from p3log.sim import SimConfig, serve_sim

StartSim = Callable[..., Awaitable[str]]


def url_for(transport: Transport, port: int) -> str:
    return f"ws://127.0.0.1:{port}/" if transport == "ws" else f"tcp://127.0.0.1:{port}"


@pytest.fixture(params=["ws", "tcp"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def start_sim(nursery: trio.Nursery, transport: Transport) -> StartSim:
    """`await start_sim(config)` serves a simulator for the test; returns its URL."""

    async def start(config: SimConfig | None = None) -> str:
        config = config if config is not None else SimConfig(time_scale=0)
        port = await nursery.start(serve_sim, config, "127.0.0.1", 0, transport)
        return url_for(transport, port)

    return start
