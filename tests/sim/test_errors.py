"""Answers to what cannot be served: each defined, each echoing the tag where there is one."""

from __future__ import annotations

import json

import pytest

from p3log.protocol import Message, MessageType
from p3log.sim import GENERIC_ERROR_TYPE, SimConfig, load_scenario
from tests.sim.peer import WIFI, Peer, execute_request, signature_request


async def send_raw(peer: Peer, data: bytes) -> Message:
    await peer.send_bytes(data)
    return await peer.receive()


@pytest.mark.parametrize(
    ("data", "message_start"),
    [
        (b"this is not JSON", "not JSON"),
        (b'{"type": "LOGIN_MERCHANT_REQUEST", "tag": ', "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "not an object"),
    ],
)
async def test_bytes_that_are_no_json_object(start_sim, data, message_start):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        answer = await send_raw(peer, data)
        still_open = await peer.transact("t-1")
    assert answer.type == GENERIC_ERROR_TYPE == "ERROR_RESPONSE"
    assert answer.tag is None and "tag" in answer.null_keys  # "tag": null on the wire
    assert answer.status == "ERROR"
    assert answer.error.type == "PARAMETER_INVALID"
    assert answer.error.source == "PARAMETER"
    assert answer.error.message.startswith(message_start)
    assert still_open[-1].status == "OK"


async def test_an_object_without_a_type_echoes_its_tag(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        answer = await send_raw(peer, b'{"tag": "x-1", "hello": true}')
    assert answer.type == GENERIC_ERROR_TYPE
    assert answer.tag == "x-1"
    assert answer.error.type == "PARAMETER_MISSING"


async def test_a_known_request_with_a_wrongly_typed_field(start_sim):
    url = await start_sim()
    request = {
        "type": "EXECUTE_TRANSACTION_REQUEST",
        "tag": "x-1",
        "resource": "devices/usbReader",
        "executeTransactionRequest": {"transactionParameters": {"amount": "ten"}},
    }
    async with Peer.connect(url) as peer:
        answer = await send_raw(peer, json.dumps(request).encode())
        still_free = await peer.transact("t-1")
    assert answer.type == MessageType.EXECUTE_TRANSACTION_RESPONSE
    assert answer.tag == "x-1"
    assert answer.resource == "devices/usbReader"
    assert answer.error.type == "PARAMETER_INVALID"
    assert "transactionParameters.amount" in answer.error.message
    assert still_free[-1].status == "OK"


async def test_an_unknown_request_type(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        (answer,) = await peer.request(Message(type="REBOOT_READER_REQUEST", tag="x-1"))
    assert answer.type == "REBOOT_READER_RESPONSE"
    assert answer.tag == "x-1"
    assert answer.error.type == "PARAMETER_INVALID"
    assert "REBOOT_READER_REQUEST" in answer.error.message


@pytest.mark.parametrize(
    "msg_type", ["EXECUTE_TRANSACTION_UPDATE", "HELLO", "LOGIN_MERCHANT_RESPONSE"]
)
async def test_a_message_that_is_not_a_request(start_sim, msg_type):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        await peer.send(Message(type=msg_type, tag="x-1"))
        answer = await peer.receive()
    assert answer.type == GENERIC_ERROR_TYPE
    assert answer.tag == "x-1"
    assert answer.error.type == "PARAMETER_INVALID"


async def test_a_request_without_a_tag(start_sim):
    url = await start_sim()
    async with Peer.connect(url, login=False) as peer:
        await peer.send(Message(type=MessageType.LOGIN_MERCHANT_REQUEST))
        answer = await peer.receive()
    assert answer.type == MessageType.LOGIN_MERCHANT_RESPONSE
    assert answer.tag is None
    assert answer.error.type == "PARAMETER_MISSING"
    assert "tag" in answer.error.message


async def test_a_tag_of_a_running_operation_is_refused(start_sim):
    url = await start_sim(SimConfig(scenario=load_scenario("signature"), time_scale=0))
    async with Peer.connect(url) as peer:
        await peer.send(Message(type="EXECUTE_TRANSACTION_REQUEST", tag="t-1"))
        missing = await peer.receive()
        await peer.send(execute_request("t-2"))
        await peer.until("t-2", lambda m: m.type == MessageType.EXECUTE_TRANSACTION_ACTION)
        (reused,) = await peer.request(execute_request("t-2", WIFI))
        await peer.request(signature_request("s-1", on_receipt=True))
        await peer.until_response("t-2")
    assert missing.error.type == "PARAMETER_MISSING"
    assert reused.error.type == "PARAMETER_INVALID"
    assert "t-2" in reused.error.message
