"""The tap: accept POS connections, dial the PayServer for each, relay and record.

Structure (every task has an owner):

    run_tap
    ├── services nursery: IndexWriter (DuckDB batches), GroupSync (fsync mode)
    └── sessions nursery: one task per POS connection (a Relay)
        └── listener task (in its own cancel scope)

Shutdown (`stop` is set, e.g. by SIGINT/SIGTERM): the listener stops accepting,
open sessions get `grace` seconds to finish, the rest are closed (1001), and the
index writer inserts what is still pending before `run_tap` returns.
"""

from __future__ import annotations

import ssl
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio
import trio_websocket

from p3log.net.channel import TcpChannel, Transport
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.store.log import EventLog
from p3log.store.writer import IndexWriter
from p3log.tap.durability import Durability, GroupSync
from p3log.tap.links import INTERNAL_ERROR, TcpLink, WebSocketLink
from p3log.tap.relay import Recording, Relay

UPSTREAM_CONNECT_SECONDS = 10.0


@attrs.frozen
class TapConfig:
    upstream: str
    host: str = "127.0.0.1"
    port: int = 0
    transport: Transport = "ws"
    durability: Durability = Durability.journal
    grace: float = 5.0
    dialect: Dialect = DEFAULT_DIALECT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    upstream_ca: Path | None = None

    def __attrs_post_init__(self) -> None:
        scheme = urlsplit(self.upstream).scheme
        wanted = ("ws", "wss") if self.transport == "ws" else ("tcp",)
        if scheme not in wanted:
            raise ValueError(
                f"--upstream {self.upstream} does not fit --transport {self.transport} "
                f"(expected {' or '.join(s + '://' for s in wanted)})"
            )


async def run_tap(
    config: TapConfig,
    log: EventLog,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record until `stop` is set; reports the listening port once bound."""
    async with trio.open_nursery() as services:
        writer = IndexWriter(log)
        await services.start(writer.run)
        group_sync = None
        if config.durability is Durability.fsync:
            group_sync = GroupSync(log)
            await services.start(group_sync.run)
        tap = _Tap(config, Recording(log, writer, config.durability, group_sync))
        async with trio.open_nursery() as sessions:
            listener = trio.CancelScope()
            port = await sessions.start(tap.listen, sessions, listener)
            task_status.started(port)
            await stop.wait()
            listener.cancel()
            with trio.move_on_after(config.grace):
                await tap.all_sessions_ended()
            sessions.cancel_scope.cancel()
        services.cancel_scope.cancel()


class _Tap:
    def __init__(self, config: TapConfig, recording: Recording) -> None:
        self._config = config
        self._recording = recording
        self._open_sessions = 0
        self._idle = trio.Event()
        self._idle.set()

    async def all_sessions_ended(self) -> None:
        await self._idle.wait()

    async def listen(
        self,
        sessions: trio.Nursery,
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        config = self._config
        with scope:
            if config.transport == "ws":
                server = await sessions.start(
                    lambda task_status: trio_websocket.serve_websocket(
                        self._on_websocket,
                        config.host,
                        config.port,
                        ssl_context=_server_tls(config),
                        handler_nursery=sessions,
                        max_message_size=config.dialect.tcp.max_frame_bytes,
                        task_status=task_status,
                    )
                )
                task_status.started(server.port)
            else:
                listeners = await sessions.start(
                    lambda task_status: trio.serve_tcp(
                        self._on_tcp,
                        config.port,
                        host=config.host,
                        handler_nursery=sessions,
                        task_status=task_status,
                    )
                )
                task_status.started(listeners[0].socket.getsockname()[1])
            await trio.sleep_forever()

    async def _on_websocket(self, request: trio_websocket.WebSocketRequest) -> None:
        session_id = self._begin()
        try:
            url = _upstream_url(self._config.upstream, request.path)
            self._recording.note(
                session_id,
                "connection_opened",
                {
                    "transport": "ws",
                    "peer": _address(request.remote),
                    "path": request.path,
                    "subprotocols": list(request.proposed_subprotocols),
                    "headers": _header_pairs(request.headers),
                },
            )
            async with AsyncExitStack() as stack:
                try:
                    upstream = await stack.enter_async_context(
                        trio_websocket.open_websocket_url(
                            url,
                            ssl_context=_upstream_tls(self._config, url),
                            subprotocols=request.proposed_subprotocols or None,
                            max_message_size=self._config.dialect.tcp.max_frame_bytes,
                            connect_timeout=UPSTREAM_CONNECT_SECONDS,
                        )
                    )
                except (OSError, trio_websocket.HandshakeError, trio.TooSlowError) as exc:
                    reason = f"upstream {url} unavailable: {_describe(exc)}"
                    self._recording.note(
                        session_id, "upstream_failed", {"url": url, "error": reason}
                    )
                    pos = await request.accept()
                    await pos.aclose(INTERNAL_ERROR, reason[:120])
                    return
                self._recording.note(
                    session_id,
                    "upstream_connected",
                    {"url": url, "subprotocol": upstream.subprotocol},
                )
                pos = await request.accept(subprotocol=upstream.subprotocol)
                relay = Relay(
                    self._recording, session_id, WebSocketLink(pos), WebSocketLink(upstream)
                )
                await relay.run()
        finally:
            self._end()

    async def _on_tcp(self, stream: trio.SocketStream) -> None:
        session_id = self._begin()
        try:
            dialect = self._config.dialect
            parts = urlsplit(self._config.upstream)
            self._recording.note(
                session_id,
                "connection_opened",
                {"transport": "tcp", "peer": _address(stream.socket.getpeername())},
            )
            try:
                with trio.fail_after(UPSTREAM_CONNECT_SECONDS):
                    upstream = await trio.open_tcp_stream(parts.hostname or "", parts.port or 0)
            except (OSError, trio.TooSlowError) as exc:
                reason = f"upstream {self._config.upstream} unavailable: {_describe(exc)}"
                self._recording.note(
                    session_id, "upstream_failed", {"url": self._config.upstream, "error": reason}
                )
                await stream.aclose()
                return
            self._recording.note(session_id, "upstream_connected", {"url": self._config.upstream})
            pos_link = TcpLink(TcpChannel(stream, dialect))
            upstream_link = TcpLink(TcpChannel(upstream, dialect))
            try:
                await Relay(self._recording, session_id, pos_link, upstream_link).run()
            finally:
                with trio.CancelScope(shield=True):
                    await upstream.aclose()
                    await stream.aclose()
        finally:
            self._end()

    def _begin(self) -> str:
        self._open_sessions += 1
        if self._open_sessions == 1:
            self._idle = trio.Event()
        return uuid.uuid4().hex[:16]

    def _end(self) -> None:
        self._open_sessions -= 1
        if self._open_sessions == 0:
            self._idle.set()


def _upstream_url(upstream: str, path: str) -> str:
    """The upstream URL with the POS's request path (and query) in place of its own."""
    parts = urlsplit(upstream)
    path_only, _, query = path.partition("?")
    return urlunsplit((parts.scheme, parts.netloc, path_only or "/", query, ""))


def _header_pairs(headers: list[tuple[bytes, bytes]]) -> list[list[str]]:
    """The handshake headers as recorded; the store's door redacts credentials in them."""
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]


def _address(remote: object) -> str:
    if isinstance(remote, tuple):
        return f"{remote[0]}:{remote[1]}"
    address, port = getattr(remote, "address", None), getattr(remote, "port", None)
    return f"{address}:{port}" if address is not None else str(remote)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _server_tls(config: TapConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def _upstream_tls(config: TapConfig, url: str) -> ssl.SSLContext | None:
    if urlsplit(url).scheme != "wss":
        return None
    return ssl.create_default_context(cafile=config.upstream_ca)
