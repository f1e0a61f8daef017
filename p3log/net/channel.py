"""A P3 link as a stream of whole messages, over WebSocket or framed TCP.

The simulator, the client and the replayer speak P3 without caring which transport
carries it: they get a `Channel`, whose `receive()` returns one message's bytes and
whose `send()` takes one. `open_channel(url)` dials; `serve_channels(...)` listens.

WebSocket: one P3 message is one text message (bytes that are not UTF-8 go as a
binary message, so even malformed input can be sent verbatim). Framed TCP: the
dialect's framing (`p3log.protocol.framing`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal, Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

from p3log.net.close_codes import MESSAGE_TOO_BIG, NORMAL_CLOSURE, clip, passed_on
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.framing import FrameDecoder, FramingError, encode_frame

Transport = Literal["ws", "tcp"]
_RECEIVE_BYTES = 65536


class ChannelClosed(Exception):
    """The peer closed the link (or it broke); `code` follows WebSocket close codes."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed (code {code}{': ' + reason if reason else ''})")


class Channel(Protocol):
    """One P3 link, message by message."""

    @property
    def peer(self) -> str: ...

    @property
    def transport(self) -> Transport:
        """What carries the link ("ws" or "tcp"), as lifecycle events record it."""
        ...

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes:
        """The next whole message; raises `ChannelClosed` when the link ends."""
        ...

    async def aclose(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None: ...


class WebSocketChannel:
    transport: Transport = "ws"

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    @property
    def peer(self) -> str:
        remote = self._ws.remote
        return str(remote) if isinstance(remote, str) else f"{remote.address}:{remote.port}"

    async def send(self, data: bytes) -> None:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            message: str | bytes = data
        else:
            message = text
        try:
            await self._ws.send_message(message)
        except trio_websocket.ConnectionClosed as exc:
            raise closed_error(exc) from None

    async def receive(self) -> bytes:
        try:
            message = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise closed_error(exc) from None
        return message.encode() if isinstance(message, str) else message

    async def aclose(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        # the door of every WebSocket close p3log sends: a sendable code, a reason that fits
        await self._ws.aclose(passed_on(code), clip(reason) or None)


class TcpChannel:
    transport: Transport = "tcp"

    def __init__(self, stream: trio.SocketStream, dialect: Dialect = DEFAULT_DIALECT) -> None:
        self._stream = stream
        self._dialect = dialect
        self._decoder = FrameDecoder.for_dialect(dialect)
        self._send_lock = trio.Lock()

    @property
    def peer(self) -> str:
        host, port, *_ = self._stream.socket.getpeername()
        return f"{host}:{port}"

    async def send(self, data: bytes) -> None:
        frame = encode_frame(data, self._dialect.tcp.framing, self._dialect.tcp.max_frame_bytes)
        async with self._send_lock:
            try:
                await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ChannelClosed(None, str(exc)) from None

    async def receive(self) -> bytes:
        while True:
            try:
                frame = self._decoder.next_frame()
            except FramingError as exc:
                await self._stream.aclose()
                raise ChannelClosed(MESSAGE_TOO_BIG, str(exc)) from None
            if frame is not None:
                return frame
            try:
                data = await self._stream.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ChannelClosed(None, str(exc) or "connection reset") from None
            if not data:
                raise ChannelClosed(NORMAL_CLOSURE, "peer closed the connection")
            self._decoder.receive_data(data)

    async def aclose(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        await self._stream.aclose()


def closed_error(exc: trio_websocket.ConnectionClosed) -> ChannelClosed:
    """The `ChannelClosed` for a trio-websocket close, with its code and reason."""
    reason = exc.reason
    return ChannelClosed(reason.code, reason.reason or "") if reason else ChannelClosed(None)


@asynccontextmanager
async def open_channel(
    url: str, dialect: Dialect = DEFAULT_DIALECT, *, connect_timeout: float | None = None
) -> AsyncIterator[Channel]:
    """Dial `ws://`, `wss://` or `tcp://HOST:PORT`.

    `connect_timeout` bounds the dial and the WebSocket handshake, and raises
    `trio.TooSlowError`. It has to be given here rather than as a cancel scope around
    the call: the WebSocket connection runs a task in a nursery that outlives the dial.
    (trio-websocket's own `connect_timeout` is not used: when it fires, its reader
    task keeps waiting on a silent peer and the dial never returns.)
    """
    parts = urlsplit(url)
    limit = math.inf if connect_timeout is None else connect_timeout
    if parts.scheme in ("ws", "wss"):
        with trio.move_on_after(limit) as dial:
            async with trio_websocket.open_websocket_url(
                url, max_message_size=dialect.tcp.max_frame_bytes, connect_timeout=math.inf
            ) as ws:
                dial.deadline = math.inf
                yield WebSocketChannel(ws)
                return
        raise trio.TooSlowError(f"{url}: no WebSocket connection within {limit:g} s")
    elif parts.scheme == "tcp":
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url}: a tcp:// URL needs a host and a port")
        with trio.fail_after(limit):
            stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        channel = TcpChannel(stream, dialect)
        try:
            yield channel
        finally:
            await channel.aclose()
    else:
        raise ValueError(f"{url}: the scheme must be ws://, wss:// or tcp://")


async def serve_channels(
    handler: Callable[[Channel], Awaitable[None]],
    host: str,
    port: int,
    transport: Transport,
    dialect: Dialect = DEFAULT_DIALECT,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept links until cancelled, one `handler(channel)` task each; reports the port."""
    if transport == "ws":

        async def accept_ws(request: trio_websocket.WebSocketRequest) -> None:
            ws = await request.accept()
            await handler(WebSocketChannel(ws))

        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: trio_websocket.serve_websocket(
                    accept_ws,
                    host,
                    port,
                    ssl_context=None,
                    max_message_size=dialect.tcp.max_frame_bytes,
                    task_status=task_status,
                )
            )
            task_status.started(server.port)
    else:

        async def accept_tcp(stream: trio.SocketStream) -> None:
            channel = TcpChannel(stream, dialect)
            try:
                await handler(channel)
            finally:
                await channel.aclose()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, accept_tcp, port, host=host)
            )
            task_status.started(listeners[0].socket.getsockname()[1])


MAX_PORT = 65535


def parse_listen(address: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, meaning 127.0.0.1) as a (host, port) pair; a port
    outside 0-65535 is refused (the socket layer would wrap it silently)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    if int(port) > MAX_PORT:
        raise ValueError(f"{address!r}: port {int(port)} is out of range (0 to {MAX_PORT})")
    return host.strip("[]") or "127.0.0.1", int(port)
