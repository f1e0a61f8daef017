"""The benchmark's PayServer stand-in: a trio-websocket server that echoes every message."""

from __future__ import annotations

import contextlib

import trio
import trio_websocket


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                echo, "127.0.0.1", 0, ssl_context=None, task_status=task_status
            )
        )
        print(f"echo: listening on ws://127.0.0.1:{server.port}/", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)
