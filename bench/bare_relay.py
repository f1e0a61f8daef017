"""The benchmark's baseline: a trio-websocket relay that forwards and records nothing."""

from __future__ import annotations

import contextlib
import sys

import trio
import trio_websocket


async def relay(request: trio_websocket.WebSocketRequest, upstream_url: str) -> None:
    pos = await request.accept()
    async with (
        trio_websocket.open_websocket_url(upstream_url) as upstream,
        trio.open_nursery() as nursery,
    ):

        async def pump(
            source: trio_websocket.WebSocketConnection, target: trio_websocket.WebSocketConnection
        ) -> None:
            try:
                while True:
                    await target.send_message(await source.get_message())
            except trio_websocket.ConnectionClosed:
                nursery.cancel_scope.cancel()

        nursery.start_soon(pump, pos, upstream)
        nursery.start_soon(pump, upstream, pos)


async def main(upstream_url: str) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                lambda request: relay(request, upstream_url),
                "127.0.0.1",
                0,
                ssl_context=None,
                task_status=task_status,
            )
        )
        print(f"bare relay: listening on ws://127.0.0.1:{server.port}/", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, sys.argv[1])
