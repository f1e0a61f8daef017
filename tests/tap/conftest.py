"""The tap as a real subprocess, and upstreams for it to relay to."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio
import trio_websocket


@attrs.define
class TapProcess:
    process: subprocess.Popen[str]
    port: int
    banner: str

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the tap and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


async def start_tap(
    store: Path, upstream: str, *options: str, file_size_limit: int | None = None
) -> TapProcess:
    """Run `p3log tap --listen 127.0.0.1:0` and read its port from the banner line.

    `file_size_limit` (RLIMIT_FSIZE) makes every write past that size fail with EFBIG,
    which is how the tests run out of disk without filling one.
    """

    def limit_file_size() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p3log",
            "tap",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--store",
            str(store),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        preexec_fn=limit_file_size,
    )
    assert process.stdout is not None
    with trio.fail_after(60):
        banner = await trio.to_thread.run_sync(process.stdout.readline)
    if "listening on" not in banner:
        process.kill()
        raise AssertionError(
            f"tap did not start: {banner!r} {process.stderr.read() if process.stderr else ''}"
        )
    found = re.search(r"listening on \w+://[^/]+:(\d+)/", banner)
    assert found is not None, banner
    return TapProcess(process, int(found.group(1)), banner)


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
