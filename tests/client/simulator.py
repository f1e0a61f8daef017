"""The real simulator, started in-process on 127.0.0.1 for client and POS tests."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import trio

from p3log.net.channel import Channel, Transport
from p3log.protocol.model import TransactionParameters
from p3log.sim import DevicesConfig, Rule, Scenario, SimConfig, serve_sim


async def start_sim(
    nursery: trio.Nursery,
    transport: str,
    *rules: Rule,
    time_scale: float = 0.0,
    **config: Any,
) -> str:
    """Serve a simulator whose scenario cycles `rules` (default: approve all); its URL."""
    scenario = Scenario(name="test", rules=rules) if rules else Scenario()
    sim_config = SimConfig(scenario=scenario, time_scale=time_scale, **config)
    port = await nursery.start(serve_sim, sim_config, "127.0.0.1", 0, transport)
    return f"ws://127.0.0.1:{port}/" if transport == "ws" else f"tcp://127.0.0.1:{port}"


def charge(amount: str | int, **extra: Any) -> TransactionParameters:
    fields = {"currency": "EUR", "type": "CHARGE", "auto_capture": True, **extra}
    return TransactionParameters(amount=Decimal(amount), **fields)


class Spy:
    """A `wrap_channel` that keeps the bytes of every message the client sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __call__(self, inner: Channel) -> Channel:
        return _SpyChannel(inner, self.sent)

    def sent_json(self, index: int) -> dict[str, Any]:
        message = json.loads(self.sent[index])
        assert isinstance(message, dict)
        return message


class _SpyChannel:
    def __init__(self, inner: Channel, sent: list[bytes]) -> None:
        self._inner = inner
        self._sent = sent

    @property
    def peer(self) -> str:
        return self._inner.peer

    @property
    def transport(self) -> Transport:
        return self._inner.transport

    async def send(self, data: bytes) -> None:
        self._sent.append(data)
        await self._inner.send(data)

    async def receive(self) -> bytes:
        return await self._inner.receive()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self._inner.aclose(code, reason)


__all__ = ["DevicesConfig", "Spy", "charge", "start_sim"]
