"""A scripted peer for client tests: the test writes the server's bytes itself."""

from __future__ import annotations

import json

import trio

from p3log.net.channel import ChannelClosed, Transport


class ScriptedPeer:
    """A `Channel` whose server side is the test: `client_sent` and `server_sends`."""

    def __init__(self) -> None:
        self.transcript: list[tuple[str, bytes]] = []  # (sender, bytes) in wire order
        self._to_client_send, self._to_client = trio.open_memory_channel[bytes](16)
        self.client_sent_channel, self._from_client = trio.open_memory_channel[bytes](16)

    @property
    def peer(self) -> str:
        return "memory"

    transport: Transport = "tcp"

    async def send(self, data: bytes) -> None:
        self.transcript.append(("client", data))
        await self.client_sent_channel.send(data)

    async def receive(self) -> bytes:
        try:
            return await self._to_client.receive()
        except trio.EndOfChannel:
            raise ChannelClosed(1000, "peer closed") from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self._to_client_send.close()

    async def next_request(self) -> dict[str, object]:
        request = json.loads(await self._from_client.receive())
        assert isinstance(request, dict)
        return request

    async def server_sends(self, **message: object) -> None:
        await self.server_sends_raw(json.dumps(message).encode())

    async def server_sends_raw(self, data: bytes) -> None:
        self.transcript.append(("server", data))
        await self._to_client_send.send(data)


def login_response(tag: object) -> dict[str, object]:
    return {
        "type": "LOGIN_MERCHANT_RESPONSE",
        "tag": tag,
        "status": "OK",
        "loginMerchantResponse": {"devices": [{"resource": "devices/r"}]},
    }
