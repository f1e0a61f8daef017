"""The simulator speaks whatever dialect it is given, for every [gap] it touches."""

from __future__ import annotations

import json

import pytest

from p3log.protocol import Dialect, MessageType, serialize
from p3log.protocol.dialect import AbortRules, ActionRules, ErrorRules, SignatureRules, TcpRules
from p3log.sim import Rule, Scenario, SimConfig
from tests.sim.peer import Peer, abort_request, execute_request, signature_request

DIALECT = Dialect(
    tcp=TcpRules(framing="u16le"),
    abort=AbortRules(
        request_type="CANCEL_PAYMENT_REQUEST", response_type="CANCEL_PAYMENT_RESPONSE"
    ),
    action=ActionRules(action_key="kind", signature_action="CUSTOMER_SIGNATURE"),
    signature=SignatureRules(signature_key="image", on_receipt_key="paper"),
    error=ErrorRules(type_key="code", source_key="origin", message_key="text"),
)


@pytest.fixture
async def url(start_sim):
    scenario = Scenario(rules=(Rule(signature=True),))
    return await start_sim(SimConfig(scenario=scenario, dialect=DIALECT, time_scale=0))


async def test_a_dialect_names_the_gaps(url):
    async with Peer.connect(url, dialect=DIALECT) as peer:
        await peer.send(execute_request("t-1"))
        before = await peer.until("t-1", lambda m: m.type.endswith("_ACTION"))
        (refused,) = await peer.request(signature_request("s-1"))
        await peer.send(abort_request("a-1", msg_type="CANCEL_PAYMENT_REQUEST"))
        rest = await peer.until_responses("a-1", "t-1")
    action = json.loads(peer.raw[len(before)])
    assert action["executeTransactionAction"]["kind"] == "CUSTOMER_SIGNATURE"
    assert before[-1].body.action == "CUSTOMER_SIGNATURE"
    error = json.loads(peer.raw[len(before) + 1])["error"]
    assert error["code"] == "PARAMETER_MISSING" and error["origin"] == "PARAMETER"
    assert "image" in error["text"] and "paper" in error["text"]
    assert refused.error.type == "PARAMETER_MISSING"
    (cancel,) = [m for m in rest if m.tag == "a-1"]
    assert cancel.type == "CANCEL_PAYMENT_RESPONSE" and cancel.status == "OK"
    final = [m for m in rest if m.type == MessageType.EXECUTE_TRANSACTION_RESPONSE]
    assert final[0].body.transaction.status == "ABORTED"


async def test_the_dialect_signature_keys_are_read(url):
    async with Peer.connect(url, dialect=DIALECT) as peer:
        await peer.send(execute_request("t-1"))
        await peer.until("t-1", lambda m: m.type.endswith("_ACTION"))
        request = signature_request("s-1", on_receipt=True)
        assert b'"paper":true' in serialize(request, DIALECT)
        (answer,) = await peer.request(request)
        rest = await peer.until_response("t-1")
    assert answer.status == "OK"
    txn = rest[-1].body.transaction
    assert txn.status == "APPROVED"
    assert "SIGNATURE_LINE" in txn.merchant_receipt.data
