"""The tap: accept POS connections, dial the PayServer for each, relay and record.

Structure (every task has an owner):

    run_tap
    ├── services nursery: the indexer (a child process, `indexing.py`; or, for a log
    │   that indexes in this process, `keep_up` on a worker thread), GroupSync (fsync)
    └── sessions nursery: one task per POS connection (a Relay)
        └── listener task (in its own cancel scope)

Shutdown (`stop` is set, e.g. by SIGINT/SIGTERM): the listener stops accepting,
open sessions get `grace` seconds to finish, the rest are closed (1001); then the
indexer is told to stop, catches up with the journal, and `run_tap` returns once it
has.

Stalled peers: a POS must start within `handshake_timeout` (complete its WebSocket
handshake, or send its first framed-TCP frame) and costs no upstream connection
until it has; the upstream must accept and complete its handshake within
`connect_timeout`. Either is closed and recorded when it does not.
"""

from __future__ import annotations

import math
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio
import trio_websocket

from p3log.net.channel import ChannelClosed, TcpChannel, Transport
from p3log.net.close_codes import GOING_AWAY, INTERNAL_ERROR, clip
from p3log.net.failures import describe_connect_failure
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.store.event import Stamp
from p3log.store.indexer import keep_up
from p3log.store.lifecycle import (
    ConnectionOpened,
    HandshakeTimeout,
    UpstreamConnected,
    UpstreamFailed,
)
from p3log.store.log import EventLog
from p3log.tap.durability import Durability, GroupSync
from p3log.tap.indexing import IndexerProcess
from p3log.tap.links import TcpLink, WebSocketLink
from p3log.tap.relay import Arrival, Recording, Relay

# The upstream's time to accept the connection and answer the WebSocket handshake.
UPSTREAM_CONNECT_SECONDS = 10.0
# A POS's time, once connected, to complete its WebSocket handshake or send its
# first framed-TCP frame (a real POS logs in at once; a quiet session after that is
# never timed out). Until then no upstream connection is opened for it.
HANDSHAKE_SECONDS = 30.0
# How long a WebSocket peer gets to answer our close frame.
_CLOSE_SECONDS = 2.0


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
    connect_timeout: float = UPSTREAM_CONNECT_SECONDS
    handshake_timeout: float = HANDSHAKE_SECONDS

    def __attrs_post_init__(self) -> None:
        for option, seconds in (
            ("--connect-timeout", self.connect_timeout),
            ("--handshake-timeout", self.handshake_timeout),
        ):
            if not 0 < seconds < math.inf:
                raise ValueError(f"{option} must be a number of seconds above 0, got {seconds}")
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
    listeners: Sequence[trio.abc.Listener[Any]] | None = None,
    dialect_file: Path | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record until `stop` is set; reports the listening port once bound. `listeners`
    are ones `open_listeners` opened already (`p3log tap` binds before it creates the
    store, so a busy port creates nothing). A `log` opened without its index (the
    tap's own) is indexed by a child `p3log index --follow` (given `dialect_file`,
    the tap's `--dialect`); one with its index (the demo) is indexed here."""
    async with trio.open_nursery() as services:
        indexer = None
        if log.indexer is not None:
            await services.start(keep_up, log.indexer)
        else:
            indexer = IndexerProcess(log.layout.root, dialect_file)
            await services.start(indexer.run)
        group_sync = None
        if config.durability is Durability.fsync:
            group_sync = GroupSync(log)
            await services.start(group_sync.run)
        tap = _Tap(config, Recording(log, config.durability, group_sync))
        async with trio.open_nursery() as sessions:
            listener = trio.CancelScope()
            port = await sessions.start(tap.listen, sessions, listener, listeners)
            task_status.started(port)
            await stop.wait()
            listener.cancel()
            with trio.move_on_after(config.grace):
                await tap.all_sessions_ended()
            sessions.cancel_scope.cancel()
        if indexer is not None:
            await indexer.stop()
        services.cancel_scope.cancel()


async def open_listeners(config: TapConfig) -> list[trio.abc.Listener[Any]]:
    """The sockets POS connections arrive on (TLS for wss://); raises `OSError` (a busy
    port, an address not of this host)."""
    tls = _server_tls(config) if config.transport == "ws" else None
    if tls is None:
        return list(await trio.open_tcp_listeners(config.port, host=config.host))
    return list(
        await trio.open_ssl_over_tcp_listeners(
            config.port, tls, host=config.host, https_compatible=True
        )
    )


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
        opened: Sequence[trio.abc.Listener[Any]] | None,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        config = self._config
        with scope:
            listeners = list(opened) if opened is not None else await open_listeners(config)
            handler: Callable[[Any], Awaitable[None]] = (
                self._on_websocket_stream if config.transport == "ws" else self._on_tcp
            )
            await sessions.start(
                partial(trio.serve_listeners, handler, listeners, handler_nursery=sessions)
            )
            port = _bound_port(listeners[0])
            task_status.started(port)
            await trio.sleep_forever()

    async def _on_websocket_stream(self, stream: trio.abc.Stream) -> None:
        """A POS's WebSocket handshake, within `handshake_timeout`; then its session."""
        seconds = self._config.handshake_timeout
        async with trio.open_nursery() as connection:
            request = None
            with trio.move_on_after(seconds):
                request = await trio_websocket.wrap_server_stream(
                    connection, stream, max_message_size=self._config.dialect.tcp.max_frame_bytes
                )
            try:
                if request is None:
                    self._recording.note(
                        _new_session_id(),
                        HandshakeTimeout(
                            transport="ws",
                            peer=_stream_peer(stream),
                            seconds=seconds,
                            reason=f"no WebSocket handshake within {seconds:g} s",
                        ),
                    )
                else:
                    await self._on_websocket(request)
            finally:
                connection.cancel_scope.cancel()  # the connection's reader task
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)

    async def _on_websocket(self, request: trio_websocket.WebSocketRequest) -> None:
        session_id = self._begin()
        try:
            config = self._config
            url = _upstream_url(config.upstream, request.path)
            self._recording.note(
                session_id,
                ConnectionOpened(
                    transport="ws",
                    peer=_address(request.remote),
                    path=request.path,
                    subprotocols=tuple(request.proposed_subprotocols),
                    headers=_header_pairs(request.headers),
                ),
            )
            failure = None
            connected = False
            # One deadline over the TCP connect, TLS and the WebSocket handshake: a
            # peer that accepts and then says nothing must not hold the POS.
            deadline = trio.current_time() + config.connect_timeout
            with trio.CancelScope(deadline=deadline) as dialing:
                try:
                    async with trio_websocket.open_websocket_url(
                        url,
                        ssl_context=_upstream_tls(config, url),
                        subprotocols=request.proposed_subprotocols or None,
                        max_message_size=config.dialect.tcp.max_frame_bytes,
                        connect_timeout=math.inf,  # the deadline above
                    ) as upstream:
                        connected = True
                        dialing.deadline = math.inf
                        self._recording.note(
                            session_id, UpstreamConnected(url=url, subprotocol=upstream.subprotocol)
                        )
                        pos = await request.accept(subprotocol=upstream.subprotocol)
                        relay = Relay(
                            self._recording, session_id, WebSocketLink(pos), WebSocketLink(upstream)
                        )
                        await relay.run()
                except (OSError, trio_websocket.HandshakeError) as exc:
                    if connected:
                        raise
                    failure = describe_connect_failure(exc)
            if dialing.cancelled_caught:
                failure = f"no WebSocket handshake within {config.connect_timeout:g} s"
            if failure is not None:
                reason = f"upstream {url} unavailable: {failure}"
                self._recording.note(session_id, UpstreamFailed(url=url, error=reason))
                pos = await request.accept()
                with trio.move_on_after(_CLOSE_SECONDS):
                    await pos.aclose(INTERNAL_ERROR, clip(reason))
        finally:
            self._end()

    async def _on_tcp(self, stream: trio.SocketStream) -> None:
        session_id = self._begin()
        try:
            config = self._config
            self._recording.note(
                session_id,
                ConnectionOpened(transport="tcp", peer=_address(stream.socket.getpeername())),
            )
            pos = TcpLink(TcpChannel(stream, config.dialect))
            try:
                first = await self._first_frame(session_id, pos)
                if first is not None:
                    await self._relay_tcp(session_id, pos, first)
            finally:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
        finally:
            self._end()

    async def _first_frame(self, session_id: str, pos: TcpLink) -> Arrival | None:
        """The POS's first frame, within `handshake_timeout`; None (recorded) if the
        POS closed or stayed silent instead."""
        seconds = self._config.handshake_timeout
        try:
            with trio.fail_after(seconds):
                message = await pos.receive()
        except trio.TooSlowError:
            reason = f"no first frame within {seconds:g} s"
            self._recording.note(
                session_id, HandshakeTimeout(transport="tcp", seconds=seconds, reason=reason)
            )
            self._recording.note_closed(session_id, "tap", None, reason)
            return None
        except ChannelClosed as closed:
            self._recording.note_closed(session_id, "client", closed.code, closed.reason)
            return None
        except trio.Cancelled:  # the tap is shutting down: closed as a relay would be
            self._recording.note_closed(session_id, "tap", GOING_AWAY, "p3log tap shutting down")
            raise
        return Arrival(message, Stamp.now())

    async def _relay_tcp(self, session_id: str, pos: TcpLink, first: Arrival) -> None:
        """Dial the upstream for a POS that has sent its first frame, and relay."""
        config = self._config
        parts = urlsplit(config.upstream)
        try:
            with trio.fail_after(config.connect_timeout):
                upstream = await trio.open_tcp_stream(parts.hostname or "", parts.port or 0)
        except (OSError, trio.TooSlowError) as exc:
            reason = f"upstream {config.upstream} unavailable: {describe_connect_failure(exc)}"
            self._recording.note_unforwarded(session_id, "client", first)
            self._recording.note(session_id, UpstreamFailed(url=config.upstream, error=reason))
            return
        self._recording.note(session_id, UpstreamConnected(url=config.upstream))
        upstream_link = TcpLink(TcpChannel(upstream, config.dialect))
        try:
            await Relay(self._recording, session_id, pos, upstream_link, first).run()
        finally:
            with trio.CancelScope(shield=True):
                await upstream.aclose()

    def _begin(self) -> str:
        self._open_sessions += 1
        if self._open_sessions == 1:
            self._idle = trio.Event()
        return _new_session_id()

    def _end(self) -> None:
        self._open_sessions -= 1
        if self._open_sessions == 0:
            self._idle.set()


def _bound_port(listener: trio.abc.Listener[Any]) -> int:
    while isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    assert isinstance(listener, trio.SocketListener)
    return int(listener.socket.getsockname()[1])


def _new_session_id() -> str:
    return uuid.uuid4().hex[:16]


def _stream_peer(stream: trio.abc.Stream) -> str:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(inner, trio.SocketStream):
        return _address(inner.socket.getpeername())
    return "unknown"


def _upstream_url(upstream: str, path: str) -> str:
    """The upstream URL with the POS's request path (and query) in place of its own."""
    parts = urlsplit(upstream)
    path_only, _, query = path.partition("?")
    return urlunsplit((parts.scheme, parts.netloc, path_only or "/", query, ""))


def _header_pairs(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    """The handshake headers as recorded; the store's door redacts credentials in them."""
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)


def _address(remote: object) -> str:
    if isinstance(remote, tuple):
        return f"{remote[0]}:{remote[1]}"
    address, port = getattr(remote, "address", None), getattr(remote, "port", None)
    return f"{address}:{port}" if address is not None else str(remote)


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
