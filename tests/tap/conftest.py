"""The tap as a real subprocess, and upstreams for it to relay to."""

from __future__ import annotations

import resource
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio
import trio_websocket

from p3log.store.read import open_store
from tests.processes import ServerProcess, start_p3log_server


def start_tap(
    store: Path, upstream: str, *options: str, file_size_limit: int | None = None
) -> ServerProcess:
    """Run `p3log tap --listen 127.0.0.1:0 …` and wait until it listens.

    `file_size_limit` (RLIMIT_FSIZE) makes every write past that size fail with EFBIG,
    which is how the tests run out of disk without filling one.
    """

    def limit_file_size() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return start_p3log_server(
        "tap",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
        "--store",
        str(store),
        *options,
        preexec_fn=limit_file_size,
    )


def indexer_pid(tap: ServerProcess) -> int | None:
    """The tap's indexer child (`p3log index --follow`), if one runs."""
    children = [
        int(child)
        for task in Path(f"/proc/{tap.process.pid}/task").iterdir()  # any thread's child
        for child in (task / "children").read_text().split()
    ]
    return children[0] if children else None


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def kill_tap(tap: ServerProcess, timeout: float = 60) -> None:
    """SIGKILL the tap, then wait for its indexer, which sees its stdin end, catches
    up with the journal and exits (until then the store is busy, as while recording)."""
    indexer = indexer_pid(tap)
    tap.process.kill()
    tap.process.wait()
    deadline = time.monotonic() + timeout
    while indexer is not None and alive(indexer):
        assert time.monotonic() < deadline, f"the tap's indexer (pid {indexer}) ran on"
        time.sleep(0.05)


def recorded_payloads(store: Path) -> Counter[tuple[str, str]]:
    """How often each (sender, payload) was recorded as a message; opening the store
    recovers the journal past the index first (as after a kill)."""
    con = open_store(store)
    try:
        rows = con.execute("SELECT sender, payload FROM events WHERE kind = 'message'").fetchall()
    finally:
        con.close()
    return Counter((sender, payload) for sender, payload in rows)


async def close_reason(
    ws: trio_websocket.WebSocketConnection, timeout: float = 10
) -> trio_websocket.CloseReason:
    """How `ws` was closed; fails the test if a message arrives instead."""
    try:
        with trio.fail_after(timeout):
            message = await ws.get_message()
    except trio_websocket.ConnectionClosed as closed:
        assert closed.reason is not None
        return closed.reason
    raise AssertionError(f"expected the connection to close, got a message: {message!r}")


Handler = Callable[[trio_websocket.WebSocketConnection], Awaitable[None]]


async def echo(ws: trio_websocket.WebSocketConnection) -> None:
    """Send every message back, text as text and binary as binary."""
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


@asynccontextmanager
async def websocket_upstream(handler: Handler = echo) -> AsyncIterator[int]:
    """A real WebSocket server on 127.0.0.1 running `handler` per connection."""

    async def accept(request: trio_websocket.WebSocketRequest) -> None:
        await handler(await request.accept())

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                trio_websocket.serve_websocket,
                accept,
                "127.0.0.1",
                0,
                ssl_context=None,
                max_message_size=4 * 1024 * 1024,
            )
        )
        yield server.port
        nursery.cancel_scope.cancel()


@attrs.define
class SilentUpstream:
    """A TCP listener that accepts and then never sends a byte; counts what it accepted."""

    port: int = 0
    accepted: int = 0
    open: int = 0


@asynccontextmanager
async def silent_upstream() -> AsyncIterator[SilentUpstream]:
    upstream = SilentUpstream()

    async def hold(stream: trio.SocketStream) -> None:
        upstream.accepted += 1
        upstream.open += 1
        try:
            while await stream.receive_some(65536):  # read, never answer, until closed
                pass
        except trio.BrokenResourceError:
            pass
        finally:
            upstream.open -= 1

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
        upstream.port = listeners[0].socket.getsockname()[1]
        yield upstream
        nursery.cancel_scope.cancel()
