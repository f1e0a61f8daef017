"""The tap as a subprocess between real peers: forwarding, recording, faults."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio_websocket

from p3log.store.read import open_store
from p3log.store.verify import verify_store
from tests.tap.conftest import close_reason, start_tap, websocket_upstream


def _events(store: Path, where: str = "true") -> list[tuple[object, ...]]:
    con = open_store(store)
    try:
        return con.execute(
            f"SELECT session_id, sender, kind, msg_type, payload, raw FROM events WHERE {where} "
            "ORDER BY seq"
        ).fetchall()
    finally:
        con.close()


def _details(store: Path, kind: str) -> list[dict[str, object]]:
    return [json.loads(str(row[4])) for row in _events(store, f"kind = '{kind}'")]


async def test_messages_pass_byte_for_byte_and_are_recorded_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    texts = ['{"type":"PING_REQUEST","tag":"a"}', '{ "type" : "X_REQUEST",  "tag":"b" }']
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            async with trio_websocket.open_websocket_url(tap.ws_url + "p3/path") as ws:
                for text in texts:
                    await ws.send_message(text)
                    assert await ws.get_message() == text  # whitespace and all
        finally:
            assert tap.stop() == 0
    rows = _events(store, "kind = 'message'")
    assert [(r[1], r[5]) for r in rows] == [
        ("client", texts[0].encode()),
        ("server", texts[0].encode()),
        ("client", texts[1].encode()),
        ("server", texts[1].encode()),
    ]
    (opened,) = _details(store, "connection_opened")
    assert opened["path"] == "/p3/path"
    (connected,) = _details(store, "upstream_connected")
    assert connected["url"] == f"ws://127.0.0.1:{upstream_port}/p3/path"
    (closed,) = _details(store, "connection_closed")
    assert (closed["by"], closed["code"]) == ("client", 1000)
    assert verify_store(store).ok


async def test_malformed_json_and_binary_frames_are_forwarded_and_recorded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                await ws.send_message('{"type": "EXECUTE_TRANSACTION_REQ')
                assert await ws.get_message() == '{"type": "EXECUTE_TRANSACTION_REQ'
                await ws.send_message(b"\x00\xff binary")
                assert await ws.get_message() == b"\x00\xff binary"  # still a binary frame
                await ws.send_message(b'{"type":"A_REQUEST","tag":"t"}')
                assert await ws.get_message() == b'{"type":"A_REQUEST","tag":"t"}'
        finally:
            assert tap.stop() == 0
    rows = _events(store, "sender <> 'tap'")
    assert [(r[1], r[2]) for r in rows] == [
        ("client", "malformed"),
        ("server", "malformed"),
        ("client", "malformed"),
        ("server", "malformed"),
        ("client", "message"),
        ("server", "message"),
    ]
    assert rows[2][5] == b"\x00\xff binary"


async def test_an_oversized_frame_closes_only_its_session_with_1009(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            async with (
                trio_websocket.open_websocket_url(tap.ws_url) as healthy,
                trio_websocket.open_websocket_url(
                    tap.ws_url, max_message_size=4 * 1024 * 1024
                ) as big,
            ):
                await big.send_message("x" * (1024 * 1024 + 1))
                assert (await close_reason(big)).code == 1009
                await healthy.send_message('{"type":"PING_REQUEST","tag":"still here"}')
                assert "still here" in str(await healthy.get_message())
        finally:
            assert tap.stop() == 0
    (too_large,) = _details(store, "frame_too_large")
    assert too_large["from"] == "client"
    codes = sorted(int(str(d["code"])) for d in _details(store, "connection_closed"))
    assert codes == [1000, 1009]


async def test_an_unreachable_upstream_gets_the_pos_a_1011_and_the_tap_carries_on(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    with trio.socket.socket() as placeholder:  # a port nobody listens on
        await placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    tap = start_tap(store, f"ws://127.0.0.1:{dead_port}/")
    try:
        async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
            reason = await close_reason(ws)
            assert reason.code == 1011
            assert "unavailable" in (reason.reason or "")
        async with trio_websocket.open_websocket_url(tap.ws_url) as again:  # still serving
            assert (await close_reason(again)).code == 1011
    finally:
        assert tap.stop() == 0
    failures = _details(store, "upstream_failed")
    assert len(failures) == 2
    assert f"127.0.0.1:{dead_port}" in str(failures[0]["url"])


async def test_an_upstream_that_dies_mid_conversation_gets_the_pos_a_1011(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def answer_once_then_vanish(ws: trio_websocket.WebSocketConnection) -> None:
        await ws.send_message(await ws.get_message())
        await ws._close_stream()

    async with websocket_upstream(answer_once_then_vanish) as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                await ws.send_message('{"type":"EXECUTE_TRANSACTION_REQUEST","tag":"t1"}')
                assert "t1" in str(await ws.get_message())
                assert (await close_reason(ws)).code == 1011
        finally:
            assert tap.stop() == 0
    (closed_event,) = _details(store, "connection_closed")
    assert closed_event["by"] == "server"
    assert closed_event["code"] == 1006  # what the tap saw: no close frame


async def test_a_pos_that_vanishes_is_recorded_and_the_tap_carries_on(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
            await stream.send_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            with trio.fail_after(10):
                while b"\r\n\r\n" not in await stream.receive_some(4096):
                    pass
            stream.socket.setsockopt(
                trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
            )
            await stream.aclose()  # RST: the POS is gone without a close frame
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                await ws.send_message('{"type":"PING_REQUEST","tag":"after"}')
                assert "after" in str(await ws.get_message())
        finally:
            assert tap.stop() == 0
    closes = _details(store, "connection_closed")
    assert {"by": "client", "code": 1006} in [{"by": c["by"], "code": c["code"]} for c in closes]
