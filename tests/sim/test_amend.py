"""Amend: refund, capture and tip adjust of a known transaction identifier."""

from __future__ import annotations

from decimal import Decimal

from p3log.protocol import AmendTransactionResponse, MessageType
from p3log.sim import SimConfig, load_scenario
from tests.sim.peer import Peer, amend_request, states


async def charge(peer: Peer, tag: str, amount: str = "20.00", **params):
    messages = await peer.transact(tag, amount=amount, **params)
    txn = messages[-1].body.transaction
    assert txn.status == "APPROVED"
    return txn


def amended(messages):
    response = messages[-1]
    assert response.type == MessageType.AMEND_TRANSACTION_RESPONSE
    assert isinstance(response.body, AmendTransactionResponse)
    return response.body.transaction


async def test_refunds_of_a_known_transaction(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        original = await charge(peer, "t-1")
        partial = await peer.request(amend_request("r-1", "REFUND", original.identifier, "5.00"))
        rest = await peer.request(amend_request("r-2", "REFUND", original.identifier))
        (too_much,) = await peer.request(amend_request("r-3", "REFUND", original.identifier, "1"))
    assert states(partial) == ["PROCESSING", "APPROVED"]
    assert all(m.tag == "r-1" for m in partial)
    assert partial[-1].status == "OK"
    assert partial[-1].resource is None and "resource" in partial[-1].null_keys
    refund = amended(partial)
    assert refund.type == "REFUND" and refund.status == "APPROVED"
    assert refund.amount == Decimal("5.00")
    assert refund.identifier != original.identifier and len(refund.identifier) == 32
    assert refund.card_details.masked_card_number == original.card_details.masked_card_number
    assert refund.merchant_receipt is not None
    assert amended(rest).amount == Decimal("15.00")
    assert too_much.error.type == "PARAMETER_INVALID"


async def test_a_refund_from_another_session(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as first:
        original = await charge(first, "t-1")
    async with Peer.connect(url) as second:
        messages = await second.request(amend_request("r-1", "REFUND", original.identifier))
    assert amended(messages).amount == original.amount


async def test_capture_of_a_preauthorisation(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        original = await charge(peer, "t-1", auto_capture=False)
        captured = await peer.request(amend_request("c-1", "CAPTURE", original.identifier))
        (again,) = await peer.request(amend_request("c-2", "CAPTURE", original.identifier))
    assert original.captured is False
    txn = amended(captured)
    assert txn.identifier == original.identifier
    assert txn.captured is True
    assert again.error.type == "PARAMETER_INVALID"


async def test_tip_adjust(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        original = await charge(peer, "t-1", tip_adjustable=True)
        plain = await charge(peer, "t-2")
        adjusted = await peer.request(
            amend_request("a-1", "TIP_ADJUST", original.identifier, "2.50")
        )
        (refused,) = await peer.request(amend_request("a-2", "TIP_ADJUST", plain.identifier, "1"))
        (no_tip,) = await peer.request(amend_request("a-3", "TIP_ADJUST", original.identifier))
    txn = amended(adjusted)
    assert txn.identifier == original.identifier
    assert txn.amount == Decimal("22.50")
    assert txn.details.included_tip_amount == Decimal("2.50")
    assert txn.details.tip_adjust_status == "TIP_ADJUSTED"
    assert refused.error.type == "PARAMETER_INVALID"
    assert no_tip.error.type == "PARAMETER_MISSING"


async def test_an_unknown_identifier(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        for n, kind in enumerate(["REFUND", "CAPTURE", "TIP_ADJUST"]):
            (response,) = await peer.request(amend_request(f"x-{n}", kind, "0" * 32, "1.00"))
            assert response.type == MessageType.AMEND_TRANSACTION_RESPONSE
            assert response.tag == f"x-{n}"
            assert response.error.type == "TRANSACTION_REFERENCE_NOT_FOUND"
            assert response.error.source == "TRANSACTION"


async def test_a_declined_transaction_cannot_be_refunded(start_sim):
    url = await start_sim(SimConfig(scenario=load_scenario("decline"), time_scale=0))
    async with Peer.connect(url) as peer:
        messages = await peer.transact("t-1")
        identifier = messages[-1].body.transaction.identifier
        (response,) = await peer.request(amend_request("r-1", "REFUND", identifier))
    assert response.error.type == "PARAMETER_INVALID"
    assert "DECLINED" in response.error.message
