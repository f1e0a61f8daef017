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

# Close codes that must not be sent in a close frame (RFC 6455 §7.4.1): "no status",
# "abnormal closure" and "TLS failure" only describe what happened locally.
_UNSENDABLE = frozenset({1005, 1006, 1015})
INTERNAL_ERROR = 1011


@attrs.frozen
class WireMessage:
    data: bytes
    binary: bool = False  # WebSocket opcode; always False on framed TCP


class Link(Protocol):
    async def receive(self) -> WireMessage:
        """The next message; raises `ChannelClosed` with the close code and reason."""
        ...

    async def send(self, message: WireMessage) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


def sendable_close(code: int | None) -> int:
    """The close code to pass on to the other side for one we observed."""
    if code is None or code in _UNSENDABLE:
        return INTERNAL_ERROR
    return code


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

    async def close(self, code: int, reason: str) -> None:
        await self._ws.aclose(sendable_close(code), reason[:120] or None)


class TcpLink:
    def __init__(self, channel: TcpChannel) -> None:
        self._channel = channel

    async def receive(self) -> WireMessage:
        return WireMessage(await self._channel.receive())

    async def send(self, message: WireMessage) -> None:
        await self._channel.send(message.data)

    async def close(self, code: int, reason: str) -> None:
        await self._channel.aclose()
