"""What the tap promises about events when it is killed, stopped or restarted."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio
import trio_websocket

from p3log.store.read import open_store
from p3log.store.verify import verify_store
from tests.tap.conftest import (
    close_reason,
    kill_tap,
    recorded_payloads,
    start_tap,
    websocket_upstream,
)

SESSIONS = 20


@pytest.mark.parametrize("durability", ["journal", "fsync"])
async def test_sigkill_during_20_sessions_loses_no_message_a_peer_received(
    tmp_path: Path, durability: str
) -> None:
    store = tmp_path / "store"
    upstream_saw: list[str] = []  # what the server received through the tap
    pos_saw: list[str] = []  # what the POS received through the tap

    async def recording_echo(ws: trio_websocket.WebSocketConnection) -> None:
        try:
            while True:
                message = await ws.get_message()
                upstream_saw.append(str(message))
                await ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass

    async def pos(url: str, session: int) -> None:
        try:
            async with trio_websocket.open_websocket_url(url) as ws:
                for n in range(10_000):
                    await ws.send_message(
                        json.dumps({"type": "PING_REQUEST", "tag": f"{session}-{n}"})
                    )
                    pos_saw.append(str(await ws.get_message()))
        except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
            pass  # the tap was killed under us

    async with websocket_upstream(recording_echo) as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/", "--durability", durability)
        async with trio.open_nursery() as nursery:
            for session in range(SESSIONS):
                nursery.start_soon(pos, tap.ws_url, session)
            with trio.fail_after(60):
                while len(pos_saw) < 1500:
                    await trio.sleep(0.01)
            kill_tap(tap)  # SIGKILL: no flush, no goodbye (its indexer then catches up)
        assert tap.process.returncode == -signal.SIGKILL

    recorded = recorded_payloads(store)  # opening the store recovers the journal
    assert all(count == 1 for count in recorded.values()), "a message was recorded twice"
    for text in upstream_saw:
        assert recorded[("client", text)] == 1, f"forwarded but not recorded: {text}"
    for text in pos_saw:
        assert recorded[("server", text)] == 1, f"forwarded but not recorded: {text}"
    report = verify_store(store)
    assert report.ok, report.problem

    # A restarted tap continues the same chain.
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
            await ws.send_message('{"type":"PING_REQUEST","tag":"after restart"}')
            await ws.get_message()
        assert tap.stop() == 0
    assert verify_store(store).count > report.count
    assert verify_store(store).ok


async def test_sigterm_gives_open_sessions_their_grace_then_closes_them(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/", "--grace", "0.5")
        async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
            await ws.send_message('{"type":"PING_REQUEST","tag":"1"}')
            await ws.get_message()
            tap.process.send_signal(signal.SIGTERM)
            assert (await close_reason(ws, timeout=20)).code == 1001
        assert await trio.to_thread.run_sync(tap.process.wait) == 0
        assert tap.process.stdout is not None
        assert "stopped" in tap.process.stdout.read()
    con = open_store(store)
    try:
        (closed_event,) = con.execute(
            "SELECT payload FROM events WHERE kind = 'connection_closed'"
        ).fetchall()
    finally:
        con.close()
    assert json.loads(closed_event[0])["by"] == "tap"
    assert verify_store(store).ok


async def test_secrets_sent_through_the_tap_reach_no_file_of_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    secret, pan = "tap-secret-5d2e", "4012888888881881"
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                login = {
                    "type": "LOGIN_MERCHANT_REQUEST",
                    "tag": "l",
                    "loginMerchantRequest": {"merchantIdentifier": "m", "merchantSecret": secret},
                }
                await ws.send_message(json.dumps(login))
                assert secret in str(await ws.get_message())  # the peer still gets it
                await ws.send_message(f'{{"type":"X_UPDATE","tag":"x","note":"card {pan}"}}')
                await ws.get_message()
                await ws.send_message(f'broken {{"merchantSecret": "{secret}", card {pan}')
                await ws.get_message()
        finally:
            assert tap.stop() == 0
    files = [path for path in store.rglob("*") if path.is_file()]
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert pan.encode() not in data, path
