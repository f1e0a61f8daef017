"""The signature action: the server waits; a bad answer leaves it open; sign-on-receipt."""

from __future__ import annotations

import pytest

from p3log.protocol import ExecuteTransactionAction, MessageType
from p3log.sim import SimConfig, load_scenario
from tests.sim.peer import PNG, USB, Peer, execute_request, signature_request, states, updates


@pytest.fixture
async def signature_url(start_sim):
    return await start_sim(SimConfig(scenario=load_scenario("signature"), time_scale=0))


def is_action(message):
    return message.type == MessageType.EXECUTE_TRANSACTION_ACTION


async def test_an_invalid_signature_leaves_the_action_open(signature_url):
    async with Peer.connect(signature_url) as peer:
        await peer.send(execute_request("t-1"))
        before = await peer.until("t-1", is_action)
        (not_base64,) = await peer.request(signature_request("s-1", png="not base64!"))
        (not_png,) = await peer.request(signature_request("s-2", png="aGVsbG8="))
        (empty,) = await peer.request(signature_request("s-3"))
        (valid,) = await peer.request(signature_request("s-4", png=PNG))
        rest = await peer.until_response("t-1")
    action = before[-1]
    assert isinstance(action.body, ExecuteTransactionAction)
    assert action.body.action == "SIGNATURE"
    assert action.resource == USB
    assert action.body.transaction.identifier == updates(before)[0].transaction.identifier
    for refused, error_type in (
        (not_base64, "PARAMETER_INVALID"),
        (not_png, "PARAMETER_INVALID"),
        (empty, "PARAMETER_MISSING"),
    ):
        assert refused.type == MessageType.SUBMIT_SIGNATURE_RESPONSE
        assert refused.error.type == error_type
    assert valid.type == MessageType.SUBMIT_SIGNATURE_RESPONSE
    assert valid.tag == "s-4" and valid.status == "OK"
    assert states(rest) == ["APPROVED"]
    txn = rest[-1].body.transaction
    assert txn.status == "APPROVED"
    assert txn.payment_details.customer_verification == "SIGNATURE"
    assert "SIGNATURE_LINE" not in txn.merchant_receipt.data


async def test_sign_on_receipt_puts_a_signature_line_on_the_merchant_receipt(signature_url):
    async with Peer.connect(signature_url) as peer:
        await peer.send(execute_request("t-1"))
        await peer.until("t-1", is_action)
        (answer,) = await peer.request(signature_request("s-1", on_receipt=True))
        rest = await peer.until_response("t-1")
    assert answer.status == "OK"
    txn = rest[-1].body.transaction
    assert txn.status == "APPROVED"
    assert "SIGNATURE_LINE" in txn.merchant_receipt.data
    assert "Cardholder signature" in txn.merchant_receipt.lines
    assert "SIGNATURE_LINE" not in txn.customer_receipt.data


async def test_a_signature_with_no_action_open(signature_url):
    async with Peer.connect(signature_url) as peer:
        (response,) = await peer.request(signature_request("s-1", png=PNG))
    assert response.type == MessageType.SUBMIT_SIGNATURE_RESPONSE
    assert response.error.type == "TRANSACTION_ACTION_ERROR"


async def test_both_answers_at_once_are_refused(signature_url):
    async with Peer.connect(signature_url) as peer:
        await peer.send(execute_request("t-1"))
        await peer.until("t-1", is_action)
        (both,) = await peer.request(signature_request("s-1", png=PNG, on_receipt=True))
        (good,) = await peer.request(signature_request("s-2", on_receipt=True))
        await peer.until_response("t-1")
    assert both.error.type == "PARAMETER_INVALID"
    assert good.status == "OK"
