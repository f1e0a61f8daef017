"""fsync mode in groups: what is read meanwhile shares the next fsync, in order, and
nothing reaches a peer before an fsync covering it.

The in-process tests run the real tap (`run_tap`) on real sockets and a real journal;
only the journal's fsync is watched (and, where said, held) to see what it covered.
"""

from __future__ import annotations

import json
import signal
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trio_websocket

from p3log.net.channel import ChannelClosed
from p3log.protocol.framing import FrameDecoder, encode_frame
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.verify import verify_store
from p3log.tap.backlog import BACKLOG_MESSAGES
from p3log.tap.durability import Durability, GroupSync
from p3log.tap.links import WireMessage
from p3log.tap.relay import Recording, Relay
from p3log.tap.server import TapConfig, run_tap
from tests.tap.conftest import kill_tap, recorded_payloads, start_tap, websocket_upstream

BURST = 300


def _ping(n: int) -> str:
    return json.dumps({"type": "PING_REQUEST", "tag": f"m{n}", "pad": "x" * 200})


def _seqs(store: Path, sender: str) -> dict[bytes, int]:
    """Each recorded message's seq, by its bytes."""
    con = open_store(store)
    try:
        rows = con.execute(
            "SELECT raw, seq FROM events WHERE kind = 'message' AND sender = ?", [sender]
        ).fetchall()
    finally:
        con.close()
    return {bytes(raw): seq for raw, seq in rows}


class WatchedSync:
    """The journal's own fsync, noting the journal head each one covered (the head when
    it started: everything written before it). While held, an fsync does not start."""

    def __init__(self) -> None:
        self.covered: list[int] = []  # one entry per completed fsync
        self.held = threading.Event()  # an fsync has waited for `release`
        self._released = threading.Event()
        self._released.set()

    def watch(self, log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
        sync = log.sync

        def watched_sync() -> None:  # on GroupSync's worker thread
            head = log.head[0]
            if not self._released.is_set():
                self.held.set()
                self._released.wait()
            sync()
            self.covered.append(head)

        monkeypatch.setattr(log, "sync", watched_sync)

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def durable(self) -> int:
        """The highest seq an fsync has covered so far."""
        return max(self.covered, default=0)


@asynccontextmanager
async def fsync_tap(
    store: Path, upstream: str, watched: WatchedSync, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, EventLog]]:
    """A real tap in fsync mode in this process, its fsync watched; yields URL and log."""
    with EventLog.open(store) as log:
        watched.watch(log, monkeypatch)
        stop = trio.Event()
        config = TapConfig(upstream=upstream, durability=Durability.fsync, grace=5)
        try:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(run_tap, config, log, stop)
                try:
                    yield f"ws://127.0.0.1:{port}/", log
                finally:
                    watched.release()  # never leave GroupSync's worker thread blocked
                    stop.set()
        finally:
            watched.release()


async def test_no_message_reaches_a_peer_before_an_fsync_covering_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    # What each side received through the tap, with the durable head when it did.
    upstream_got: list[tuple[str, int]] = []
    pos_got: list[tuple[str, int]] = []
    watched = WatchedSync()

    async def echo_noting(ws: trio_websocket.WebSocketConnection) -> None:
        try:
            while True:
                message = str(await ws.get_message())
                upstream_got.append((message, watched.durable))
                await ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass

    async def pos(url: str, connection: int) -> None:
        async with trio_websocket.open_websocket_url(url) as ws:

            async def receive() -> None:
                for _ in range(BURST):
                    message = str(await ws.get_message())
                    pos_got.append((message, watched.durable))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                for n in range(BURST):  # a burst: nothing waits for the echoes
                    await ws.send_message(_ping(connection * BURST + n))

    async with (
        websocket_upstream(echo_noting) as upstream_port,
        fsync_tap(store, f"ws://127.0.0.1:{upstream_port}/", watched, monkeypatch) as (url, _),
    ):
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for connection in range(3):
                    nursery.start_soon(pos, url, connection)

    assert len(upstream_got) == len(pos_got) == 3 * BURST
    for connection in range(3):  # each connection's messages in the order sent, both ways
        sent = [_ping(connection * BURST + n) for n in range(BURST)]
        for received in (upstream_got, pos_got):
            assert [text for text, _ in received if text in sent] == sent
    for sender, received in (("client", upstream_got), ("server", pos_got)):
        seqs = _seqs(store, sender)
        early = [(text, seqs[text.encode()], durable) for text, durable in received]
        early = [(text, seq, durable) for text, seq, durable in early if seq > durable]
        assert early == [], f"{sender} messages forwarded before an fsync covered them"
    assert verify_store(store).ok


async def test_a_burst_read_during_one_fsync_is_forwarded_after_the_next_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an fsync is under way the tap goes on reading and recording, forwards
    nothing, and then forwards the whole burst in order after one more fsync."""
    store = tmp_path / "store"
    count = BACKLOG_MESSAGES  # all fit in the backlog while the first fsync is held
    upstream_got: list[str] = []
    watched = WatchedSync()

    async def collect(ws: trio_websocket.WebSocketConnection) -> None:
        try:
            while True:
                upstream_got.append(str(await ws.get_message()))
        except trio_websocket.ConnectionClosed:
            pass

    async with (
        websocket_upstream(collect) as upstream_port,
        fsync_tap(store, f"ws://127.0.0.1:{upstream_port}/", watched, monkeypatch) as (url, log),
        trio_websocket.open_websocket_url(url) as ws,
    ):
        opened = log.head[0]  # connection_opened and upstream_connected
        burst = [_ping(n) for n in range(count)]
        watched.hold()
        try:
            for text in burst:
                await ws.send_message(text)
            with trio.move_on_after(30):
                while log.head[0] < opened + count:  # the tap reads on while the fsync waits
                    await trio.sleep(0.01)
            assert log.head[0] == opened + count, "the tap stopped reading during an fsync"
            assert watched.held.is_set() and not watched.covered
            assert upstream_got == [], "forwarded before an fsync covered it"
        finally:
            watched.release()
        with trio.fail_after(30):
            while len(upstream_got) < count:
                await trio.sleep(0.01)
        assert upstream_got == burst  # all of it, in order

    seqs = _seqs(store, "client")
    first_cover = {
        next(n for n, head in enumerate(watched.covered) if head >= seqs[t.encode()]) for t in burst
    }
    assert len(first_cover) <= 2 < count  # the held fsync and one after it, for them all


def _kinds(store: Path) -> list[str]:
    con = open_store(store)
    try:
        return [kind for (kind,) in con.execute("SELECT kind FROM events ORDER BY seq").fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("bursting", ["client", "server"])
async def test_a_burst_and_the_close_after_it_arrive_in_order_over_websocket(
    tmp_path: Path, bursting: str
) -> None:
    """One side sends a burst and closes at once, while most of it is still in flight
    in the tap: the other side gets every message, in order, and then the close."""
    store = tmp_path / "store"
    burst = [_ping(n) for n in range(BURST)]
    got: list[str] = []
    codes: list[int | None] = []

    async def send_burst_and_close(ws: trio_websocket.WebSocketConnection) -> None:
        for text in burst:
            await ws.send_message(text)
        await ws.aclose(4000, "burst done")

    async def collect(ws: trio_websocket.WebSocketConnection) -> None:
        try:
            while True:
                got.append(str(await ws.get_message()))
        except trio_websocket.ConnectionClosed as exc:
            codes.append(exc.reason.code if exc.reason else None)

    upstream_side = collect if bursting == "client" else send_burst_and_close
    pos_side = send_burst_and_close if bursting == "client" else collect
    async with websocket_upstream(upstream_side) as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/", "--durability", "fsync")
        try:
            with trio.fail_after(30):
                async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                    await pos_side(ws)
                while not codes:
                    await trio.sleep(0.01)
        finally:
            assert tap.stop() == 0
    assert got == burst
    assert codes == [4000]
    kinds = _kinds(store)
    assert kinds.count("message") == BURST and kinds[-1] == "connection_closed"
    assert verify_store(store).ok


async def test_a_burst_and_the_close_after_it_arrive_in_order_over_framed_tcp(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    burst = [_ping(n).encode() for n in range(BURST)]
    got: list[bytes] = []
    ended = trio.Event()

    async def collect(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        try:
            while data := await stream.receive_some(65536):
                decoder.receive_data(data)
                got.extend(decoder.frames())
        except trio.BrokenResourceError:
            pass
        ended.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, collect, 0, host="127.0.0.1"))
        upstream_port = listeners[0].socket.getsockname()[1]
        tap = start_tap(store, f"tcp://127.0.0.1:{upstream_port}", "--durability", "fsync")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
            await stream.send_all(b"".join(encode_frame(frame) for frame in burst))
            await stream.aclose()  # at once: most of the burst is in flight in the tap
            with trio.fail_after(30):
                await ended.wait()
        finally:
            assert tap.stop() == 0
        nursery.cancel_scope.cancel()
    assert got == burst  # every frame, in order, before the end of the stream
    kinds = _kinds(store)
    assert kinds.count("message") == BURST and kinds[-1] == "connection_closed"
    assert verify_store(store).ok


async def test_sigkill_during_bursts_in_fsync_mode_loses_no_message_a_peer_received(
    tmp_path: Path,
) -> None:
    """20 sessions each keeping a burst in flight (so the tap holds groups read but not
    yet forwarded) when the tap is killed: whatever either peer got was recorded once."""
    store = tmp_path / "store"
    upstream_saw: list[str] = []
    pos_saw: list[str] = []

    async def recording_echo(ws: trio_websocket.WebSocketConnection) -> None:
        try:
            while True:
                message = str(await ws.get_message())
                upstream_saw.append(message)
                await ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass

    async def pos(url: str, session: int) -> None:
        try:
            async with trio_websocket.open_websocket_url(url) as ws:
                for burst in range(10_000):
                    tags = [f"{session}-{burst}-{n}" for n in range(20)]
                    for tag in tags:
                        await ws.send_message(json.dumps({"type": "PING_REQUEST", "tag": tag}))
                    for _ in tags:
                        pos_saw.append(str(await ws.get_message()))
        except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
            pass  # the tap was killed under us

    async with websocket_upstream(recording_echo) as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/", "--durability", "fsync")
        async with trio.open_nursery() as nursery:
            for session in range(20):
                nursery.start_soon(pos, tap.ws_url, session)
            with trio.fail_after(60):
                while len(pos_saw) < 3000:
                    await trio.sleep(0.01)
            kill_tap(tap)  # SIGKILL: no flush, no goodbye (its indexer then catches up)
        assert tap.process.returncode == -signal.SIGKILL

    recorded = recorded_payloads(store)
    assert all(count == 1 for count in recorded.values()), "a message was recorded twice"
    for sender, saw in (("client", upstream_saw), ("server", pos_saw)):
        missing = [text for text in saw if recorded[(sender, text)] != 1]
        assert missing == [], f"{sender} messages forwarded but not recorded"
    assert verify_store(store).ok


class _Feed:
    """A POS link that has sent `messages` and then stays quiet."""

    def __init__(self, messages: list[WireMessage]) -> None:
        self._messages = deque(messages)
        self.closed: list[int | None] = []

    async def receive(self) -> WireMessage:
        await trio.lowlevel.checkpoint()
        if not self._messages:
            await trio.sleep_forever()
        return self._messages.popleft()

    async def send(self, message: WireMessage) -> None:
        raise AssertionError("the upstream sent nothing")

    async def close(self, code: int | None, reason: str) -> None:
        self.closed.append(code)


class _GoneAfter:
    """An upstream link that takes `count` messages and has then gone (1006)."""

    def __init__(self, count: int) -> None:
        self._count = count
        self.got: list[WireMessage] = []

    async def receive(self) -> WireMessage:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, message: WireMessage) -> None:
        await trio.lowlevel.checkpoint()
        if len(self.got) == self._count:
            raise ChannelClosed(1006)
        self.got.append(message)

    async def close(self, code: int | None, reason: str) -> None:
        pass


async def test_each_message_recorded_but_not_forwarded_when_the_upstream_goes_gets_its_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream goes away in the middle of a group: every message the tap recorded
    and then could not forward has a `forward_failed`, before the connection's close.
    (Links in memory: a real upstream that goes away races its own close.)"""
    store = tmp_path / "store"
    sent = [WireMessage(_ping(n).encode()) for n in range(BACKLOG_MESSAGES)]
    pos, upstream = _Feed(sent), _GoneAfter(5)
    watched = WatchedSync()
    with EventLog.open(store) as log:
        watched.watch(log, monkeypatch)
        group_sync = GroupSync(log)
        recording = Recording(log, Durability.fsync, group_sync)
        async with trio.open_nursery() as nursery:
            await nursery.start(group_sync.run)
            watched.hold()  # the first fsync waits until the tap has read them all
            try:
                nursery.start_soon(Relay(recording, "s1", pos, upstream).run)
                with trio.fail_after(30):
                    while log.head[0] < len(sent):
                        await trio.sleep(0.01)
            finally:
                watched.release()
            with trio.fail_after(30):
                while not pos.closed:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert upstream.got == sent[:5]
    assert pos.closed == [1006]  # as observed (a WebSocket link sends it as 1011)
    con = open_store(store)
    try:
        rows = con.execute(
            "SELECT kind, sender, payload FROM events WHERE session_id = 's1' ORDER BY seq"
        ).fetchall()
    finally:
        con.close()
    kinds = [kind for kind, _, _ in rows]
    unforwarded = len(sent) - 5
    assert kinds == ["message"] * len(sent) + ["forward_failed"] * unforwarded + [
        "connection_closed"
    ]
    assert {payload for kind, _, payload in rows if kind == "forward_failed"} == {
        json.dumps({"from": "client", "code": 1006, "reason": ""}, separators=(",", ":"))
    }
    assert json.loads(rows[-1][2])["by"] == "server"
