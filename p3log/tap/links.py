"""Both ends of a tapped connection, as message streams that keep every detail.

The tap forwards each message exactly as it arrived: the same bytes and, on
WebSocket, the same opcode (a binary message that happens to be valid UTF-8 stays
binary). Framed TCP has no opcodes; its frames are re-framed with the same framing,
which reproduces the bytes on the wire.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio_websocket

from p3log.net.channel import TcpChannel, closed_error
from p3log.net.close_codes import clip, passed_on


@attrs.frozen
class WireMessage:
    data: bytes
    binary: bool = False  # WebSocket opcode; always False on framed TCP


class Link(Protocol):
    async def receive(self) -> WireMessage:
        """The next message; raises `ChannelClosed` with the close code and reason."""
        ...

    async def send(self, message: WireMessage) -> None: ...

    async def close(self, code: int | None, reason: str) -> None:
        """Close with the code observed (`close_codes.passed_on`) and `reason`."""
        ...


class WebSocketLink:
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def receive(self) -> WireMessage:
        try:
            message = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise closed_error(exc) from None
        if isinstance(message, str):
            return WireMessage(message.encode())
        return WireMessage(message, binary=True)

    async def send(self, message: WireMessage) -> None:
        try:
            await self._ws.send_message(message.data if message.binary else message.data.decode())
        except trio_websocket.ConnectionClosed as exc:
            raise closed_error(exc) from None

    async def close(self, code: int | None, reason: str) -> None:
        await self._ws.aclose(passed_on(code), clip(reason) or None)


class TcpLink:
    def __init__(self, channel: TcpChannel) -> None:
        self._channel = channel

    async def receive(self) -> WireMessage:
        return WireMessage(await self._channel.receive())

    async def send(self, message: WireMessage) -> None:
        await self._channel.send(message.data)

    async def close(self, code: int | None, reason: str) -> None:
        await self._channel.aclose()
