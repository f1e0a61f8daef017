"""Deadlines: a server that accepts and then never answers.

This is the one place a hand-made server stands in for the simulator: a TCP
listener that reads whatever arrives and sends nothing back.
"""

from __future__ import annotations

import time

import pytest
import trio

from p3log.client import ConnectFailed, ConnectionLost, P3Client, RequestTimeout


async def silent_server(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def swallow(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(65536):
                pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(swallow, listeners)


async def test_a_request_times_out_and_the_client_stays_usable(nursery: trio.Nursery) -> None:
    port = await nursery.start(silent_server)
    async with P3Client.connect(f"tcp://127.0.0.1:{port}", timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match=r"no login response within 0\.2 s"):
            await client.login("m", "s")
        assert 0.2 <= time.monotonic() - started < 2
        # A per-call deadline overrides the client's; the timeout is a trio.TooSlowError too.
        with pytest.raises(trio.TooSlowError):
            await client.login("m", "s", timeout=0.05)
        assert not client.closed
        # An outer cancel scope cancels a waiting call cleanly as well.
        with trio.move_on_after(0.05) as scope:
            await client.login("m", "s", timeout=60)
        assert scope.cancelled_caught
        assert client.violations == []


async def test_an_execute_result_times_out_without_ending_the_transaction(
    nursery: trio.Nursery,
) -> None:
    port = await nursery.start(silent_server)
    async with P3Client.connect(f"tcp://127.0.0.1:{port}", timeout=0.1) as client:
        params = {"amount": 1, "currency": "EUR", "type": "CHARGE", "autoCapture": True}
        with pytest.raises(RequestTimeout):
            async with client.execute("devices/usbReader", params) as tx:
                with pytest.raises(RequestTimeout, match="no final execute response"):
                    await tx.result(timeout=0.05)
                assert not tx.done
                await tx.result(timeout=0.05)  # still waiting, may be called again


async def test_the_connection_itself_times_out(nursery: trio.Nursery) -> None:
    # A WebSocket dial whose upgrade is never answered.
    port = await nursery.start(silent_server)
    started = time.monotonic()
    with pytest.raises(ConnectFailed, match="timed out"):
        async with P3Client.connect(f"ws://127.0.0.1:{port}/", timeout=0.2):
            pass
    assert time.monotonic() - started < 2


async def test_closing_the_client_fails_what_still_waits(nursery: trio.Nursery) -> None:
    port = await nursery.start(silent_server)
    async with P3Client.connect(f"tcp://127.0.0.1:{port}") as client:
        params = {"amount": 1, "currency": "EUR", "type": "CHARGE", "autoCapture": True}
        with pytest.raises(RequestTimeout):
            async with client.execute("devices/usbReader", params) as tx:
                await tx.result(timeout=0.01)
    assert client.closed
    with pytest.raises(ConnectionLost):
        await tx.result()
    with pytest.raises(ConnectionLost):
        await client.login("m", "s")
