"""`p3log sim` as a process: serve until SIGINT or SIGTERM, then shut down cleanly."""

from __future__ import annotations

import signal
from collections.abc import Callable

import trio

from p3log.net.channel import Transport
from p3log.sim.config import SimConfig
from p3log.sim.errors import SimConfigError
from p3log.sim.server import serve_sim

__all__ = ["DEFAULT_PORTS", "listen_url", "run_sim"]

# docs/protocol.md: ws://localhost:8080/ and framed TCP on 4245 in public client code.
DEFAULT_PORTS: dict[Transport, int] = {"ws": 8080, "tcp": 4245}


def listen_url(transport: Transport, host: str, port: int) -> str:
    where = f"[{host}]" if ":" in host else host
    return f"ws://{where}:{port}/" if transport == "ws" else f"tcp://{where}:{port}"


def run_sim(
    config: SimConfig,
    host: str,
    port: int,
    transport: Transport,
    on_listening: Callable[[int], None],
) -> None:
    """Serve until a signal; `on_listening(port)` runs once the socket is bound.

    A port that cannot be bound is a `SimConfigError`; an error while serving is not
    one (it is a bug, and surfaces as such).
    """
    try:
        trio.run(_serve_until_signal, config, host, port, transport, on_listening)
    except* SimConfigError as group:
        raise _first(group) from None


def _first(group: BaseExceptionGroup[SimConfigError]) -> SimConfigError:
    """The first leaf of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _serve_until_signal(
    config: SimConfig,
    host: str,
    port: int,
    transport: Transport,
    on_listening: Callable[[int], None],
) -> None:
    # The receiver is open before the port is announced, so no signal is missed.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                bound = await nursery.start(serve_sim, config, host, port, transport)
            except* OSError as group:
                reason = _reason(group)
                raise SimConfigError(f"cannot listen on {host}:{port}: {reason}") from None
            on_listening(bound)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def _reason(group: BaseExceptionGroup[OSError]) -> str:
    first = group.exceptions[0]
    if isinstance(first, BaseExceptionGroup):
        return _reason(first)
    return first.strerror or str(first)
