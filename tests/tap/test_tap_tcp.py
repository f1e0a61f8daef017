"""The tap on framed TCP: the same relay and recording, with the dialect's framing."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from p3log.protocol.framing import FrameDecoder, encode_frame
from p3log.store.read import open_store
from p3log.store.verify import verify_store
from tests.tap.conftest import start_tap


@asynccontextmanager
async def tcp_echo_upstream() -> AsyncIterator[int]:
    async def echo(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        try:
            while data := await stream.receive_some(65536):
                decoder.receive_data(data)
                for frame in decoder.frames():
                    await stream.send_all(encode_frame(frame))
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def _read_frame(stream: trio.SocketStream, decoder: FrameDecoder) -> bytes | None:
    while (frame := decoder.next_frame()) is None:
        data = await stream.receive_some(65536)
        if not data:
            return None
        decoder.receive_data(data)
    return frame


async def test_frames_pass_unchanged_and_are_recorded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    payloads = [b'{"type":"PING_REQUEST","tag":"1"}', b"not json at all"]
    async with tcp_echo_upstream() as upstream_port:
        tap = start_tap(store, f"tcp://127.0.0.1:{upstream_port}")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
            decoder = FrameDecoder()
            # Two frames in one write, the second split across writes: framing, not reads.
            wire = b"".join(encode_frame(p) for p in payloads)
            await stream.send_all(wire[:40])
            await stream.send_all(wire[40:])
            with trio.fail_after(10):
                assert [await _read_frame(stream, decoder) for _ in payloads] == payloads
            await stream.aclose()
        finally:
            assert tap.stop() == 0
    con = open_store(store)
    try:
        rows = con.execute(
            "SELECT sender, kind, raw FROM events WHERE sender <> 'tap' ORDER BY seq"
        ).fetchall()
        kinds = [row[0] for row in con.execute("SELECT kind FROM events ORDER BY seq").fetchall()]
    finally:
        con.close()
    # Each direction in order; the two directions interleave as they happened.
    for sender in ("client", "server"):
        assert [(kind, raw) for who, kind, raw in rows if who == sender] == [
            ("message", payloads[0]),
            ("malformed", payloads[1]),
        ]
    assert kinds[:2] == ["connection_opened", "upstream_connected"]
    assert kinds[-1] == "connection_closed"
    assert verify_store(store).ok


async def test_an_oversized_frame_closes_that_connection_only(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with tcp_echo_upstream() as upstream_port:
        tap = start_tap(store, f"tcp://127.0.0.1:{upstream_port}")
        try:
            healthy = await trio.open_tcp_stream("127.0.0.1", tap.port)
            big = await trio.open_tcp_stream("127.0.0.1", tap.port)
            await big.send_all(struct.pack(">I", 2 * 1024 * 1024))  # announces 2 MiB
            with trio.fail_after(10):
                assert await big.receive_some(10) == b""  # closed by the tap
            await healthy.send_all(encode_frame(b'{"type":"PING_REQUEST","tag":"ok"}'))
            with trio.fail_after(10):
                assert await _read_frame(healthy, FrameDecoder()) == (
                    b'{"type":"PING_REQUEST","tag":"ok"}'
                )
            await healthy.aclose()
        finally:
            assert tap.stop() == 0
    con = open_store(store)
    try:
        (too_large,) = con.execute(
            "SELECT payload->>'$.reason' FROM events WHERE kind = 'frame_too_large'"
        ).fetchall()
    finally:
        con.close()
    assert "exceeds the 1048576-byte limit" in too_large[0]
