"""What the client does with messages that fit no request (docs/protocol.md §7).

The simulator never misbehaves like this, so the peer here is a scripted channel
in memory: the test writes the server's bytes itself.
"""

from __future__ import annotations

import pytest
import trio

from p3log.client import InvalidParameter, P3Client, ProtocolViolation
from tests.client.scripted import ScriptedPeer, login_response


async def test_stray_messages_are_recorded_and_the_reader_carries_on() -> None:
    peer = ScriptedPeer()
    async with P3Client.over(peer) as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.login, "m", "s")
        login = await peer.next_request()
        assert login["type"] == "LOGIN_MERCHANT_REQUEST"
        await peer.server_sends(type="EXECUTE_TRANSACTION_UPDATE", tag="nobody-asked")
        await peer.server_sends(type="EXECUTE_TRANSACTION_UPDATE")
        await peer.server_sends_raw(b"{not json")
        await peer.server_sends(**login_response(login["tag"]))
        await peer.server_sends(**login_response(login["tag"]))
        with trio.fail_after(5):
            while len(client.violations) < 4:
                await trio.sleep(0.001)
        assert [v.rule for v in client.violations] == [
            "unknown_tag",
            "no_tag",
            "malformed_message",
            "message_after_response",
        ]
        assert client.violations[0].tag == "nobody-asked"
        assert client.violations[2].data == b"{not json"
        assert client.devices[0].resource == "devices/r"
        assert not client.closed


async def test_a_response_of_the_wrong_type_fails_the_request() -> None:
    peer = ScriptedPeer()
    async with P3Client.over(peer) as client, trio.open_nursery() as nursery:

        async def answer_wrongly() -> None:
            login = await peer.next_request()
            await peer.server_sends(type="AMEND_TRANSACTION_RESPONSE", tag=login["tag"])

        nursery.start_soon(answer_wrongly)
        with pytest.raises(ProtocolViolation, match="expects LOGIN_MERCHANT_RESPONSE"):
            await client.login("m", "s")
        assert [v.rule for v in client.violations] == ["unexpected_type"]


async def test_a_malformed_response_fails_the_request() -> None:
    peer = ScriptedPeer()
    async with P3Client.over(peer) as client, trio.open_nursery() as nursery:

        async def answer_badly() -> None:
            login = await peer.next_request()
            await peer.server_sends(
                type="LOGIN_MERCHANT_RESPONSE",
                tag=login["tag"],
                loginMerchantResponse={"devices": "none"},
            )

        nursery.start_soon(answer_badly)
        with pytest.raises(
            ProtocolViolation, match=r"loginMerchantResponse\.devices: expected array"
        ):
            await client.login("m", "s")
        assert [v.rule for v in client.violations] == ["malformed_message"]


async def test_an_error_answer_of_another_type_raises_its_error() -> None:
    peer = ScriptedPeer()
    async with P3Client.over(peer) as client, trio.open_nursery() as nursery:

        async def refuse() -> None:
            login = await peer.next_request()
            await peer.server_sends(
                type="ERROR_RESPONSE",
                tag=login["tag"],
                status="ERROR",
                error={"type": "PARAMETER_INVALID", "source": "PARAMETER", "message": "no"},
            )

        nursery.start_soon(refuse)
        with pytest.raises(InvalidParameter, match="ERROR_RESPONSE ERROR: PARAMETER_INVALID"):
            await client.login("m", "s")
        assert [v.rule for v in client.violations] == ["unexpected_type"]
