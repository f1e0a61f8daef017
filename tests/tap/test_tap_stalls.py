"""Peers that stall: an upstream that accepts and never answers, a POS that connects
and never starts. Each is closed within its timeout, recorded with the reason, and
a silent POS never costs an upstream connection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio
import trio_websocket

from p3log.protocol.framing import encode_frame
from p3log.store.read import open_store
from p3log.store.verify import verify_store
from tests.tap.conftest import close_reason, silent_upstream, start_tap

# Short timeouts, so that the tests are quick; the waits below only bound a hang.
TIMEOUT = "1"
BOUND = 20


def _lifecycle(store: Path) -> list[tuple[str, dict[str, object]]]:
    con = open_store(store)
    try:
        rows = con.execute(
            "SELECT kind, payload FROM events WHERE sender = 'tap' ORDER BY seq"
        ).fetchall()
    finally:
        con.close()
    return [(kind, json.loads(payload)) for kind, payload in rows]


async def test_a_websocket_upstream_that_never_answers_the_handshake_gets_the_pos_a_1011(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    async with silent_upstream() as upstream:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream.port}/", "--connect-timeout", TIMEOUT)
        try:
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                reason = await close_reason(ws, timeout=BOUND)
            assert reason.code == 1011
            assert "no WebSocket handshake within 1 s" in (reason.reason or "")
            with trio.fail_after(BOUND):  # the tap gave up on the upstream too
                while upstream.open:
                    await trio.sleep(0.05)
        finally:
            assert tap.stop() == 0
    kinds = [kind for kind, _ in _lifecycle(store)]
    assert kinds == ["connection_opened", "upstream_failed"]
    (failure,) = [details for kind, details in _lifecycle(store) if kind == "upstream_failed"]
    assert "no WebSocket handshake within 1 s" in str(failure["error"])
    assert upstream.accepted == 1
    assert verify_store(store).ok


async def test_a_tcp_pos_that_sends_nothing_is_closed_and_never_dialed_upstream(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    async with silent_upstream() as upstream:
        tap = start_tap(store, f"tcp://127.0.0.1:{upstream.port}", "--handshake-timeout", TIMEOUT)
        try:
            silent = [await trio.open_tcp_stream("127.0.0.1", tap.port) for _ in range(3)]
            with trio.fail_after(BOUND):
                for stream in silent:
                    assert await stream.receive_some(10) == b""  # closed by the tap
            # A POS that does start gets its upstream as before.
            talking = await trio.open_tcp_stream("127.0.0.1", tap.port)
            await talking.send_all(encode_frame(b'{"type":"PING_REQUEST","tag":"1"}'))
            with trio.fail_after(BOUND):
                while not upstream.accepted:
                    await trio.sleep(0.05)
            await talking.aclose()
        finally:
            assert tap.stop() == 0
    assert upstream.accepted == 1
    timeouts = [details for kind, details in _lifecycle(store) if kind == "handshake_timeout"]
    assert len(timeouts) == 3
    assert timeouts[0]["transport"] == "tcp"
    assert timeouts[0]["reason"] == "no first frame within 1 s"
    closed = [details for kind, details in _lifecycle(store) if kind == "connection_closed"]
    assert {"by": "tap", "code": None, "reason": "no first frame within 1 s"} in closed
    assert verify_store(store).ok


async def test_a_websocket_pos_that_never_completes_its_handshake_is_closed_and_recorded(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    async with silent_upstream() as upstream:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream.port}/", "--handshake-timeout", TIMEOUT)
        try:
            silent = await trio.open_tcp_stream("127.0.0.1", tap.port)
            half = await trio.open_tcp_stream("127.0.0.1", tap.port)
            await half.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            with trio.fail_after(BOUND):
                assert await silent.receive_some(10) == b""
                assert await half.receive_some(10) == b""
        finally:
            assert tap.stop() == 0
    assert upstream.accepted == 0
    events = _lifecycle(store)
    assert [kind for kind, _ in events] == ["handshake_timeout", "handshake_timeout"]
    assert events[0][1]["transport"] == "ws"
    assert events[0][1]["reason"] == "no WebSocket handshake within 1 s"
    assert str(events[0][1]["peer"]).startswith("127.0.0.1:")


def test_the_timeouts_must_be_positive(tmp_path: Path) -> None:
    for option in ("--connect-timeout", "--handshake-timeout"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "p3log",
                "tap",
                "--upstream",
                "ws://127.0.0.1:1/",
                "--store",
                str(tmp_path / "s"),
                option,
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"p3log: {option} must be a number of seconds above 0, got 0.0"
        ]


async def test_a_tcp_pos_whose_upstream_is_down_has_its_first_frame_recorded(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    with trio.socket.socket() as placeholder:  # a port nobody listens on
        await placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    tap = start_tap(store, f"tcp://127.0.0.1:{dead_port}")
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
        await stream.send_all(encode_frame(b'{"type":"LOGIN_REQUEST","tag":"1"}'))
        with trio.fail_after(BOUND):
            assert await stream.receive_some(10) == b""  # closed by the tap
    finally:
        assert tap.stop() == 0
    con = open_store(store)
    try:
        rows = con.execute("SELECT sender, kind, msg_type FROM events ORDER BY seq").fetchall()
    finally:
        con.close()
    assert rows == [
        ("tap", "connection_opened", None),
        ("client", "message", "LOGIN_REQUEST"),
        ("tap", "upstream_failed", None),
    ]


async def test_a_silent_tcp_pos_at_shutdown_is_recorded_as_closed_by_the_tap(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    async with silent_upstream() as upstream:
        tap = start_tap(store, f"tcp://127.0.0.1:{upstream.port}", "--handshake-timeout", "600")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
            with trio.fail_after(BOUND):  # the tap has the connection
                while not _lifecycle_kinds(store):
                    await trio.sleep(0.05)
        finally:
            assert tap.stop() == 0
        await stream.aclose()
    assert _lifecycle(store)[-1] == (
        "connection_closed",
        {"by": "tap", "code": 1001, "reason": "p3log tap shutting down"},
    )
    assert upstream.accepted == 0


def _lifecycle_kinds(store: Path) -> list[str]:
    return [kind for kind, _ in _lifecycle(store)]


async def test_a_pos_that_gives_up_while_the_upstream_is_silent_leaves_the_tap_serving(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    async with silent_upstream() as upstream:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream.port}/", "--connect-timeout", TIMEOUT)
        try:
            with trio.move_on_after(0.2):  # the POS hangs up before the tap gives up
                async with trio_websocket.open_websocket_url(tap.ws_url, connect_timeout=0.1):
                    pass
            with trio.fail_after(BOUND):
                while len(_lifecycle_kinds(store)) < 2:
                    await trio.sleep(0.05)
            async with trio_websocket.open_websocket_url(tap.ws_url) as again:  # still serving
                assert (await close_reason(again, timeout=BOUND)).code == 1011
        finally:
            assert tap.stop() == 0
    assert _lifecycle_kinds(store).count("upstream_failed") == 2
