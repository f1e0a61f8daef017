"""Abort: honoured only while abortable (or while an action waits); always a final response."""

from __future__ import annotations

from p3log.protocol import ExecuteTransactionResponse, MessageType
from p3log.sim import Rule, Scenario, SimConfig, load_scenario
from tests.sim.peer import USB, Peer, abort_request, execute_request, states, updates

# A real clock (time scale 1), but only the phase under test takes any time.
QUICK = {"connect_ms": 0, "register_ms": 0, "processor_ms": 0, "removal_ms": 0}
# The shopper takes a minute to present the card (as in long_abortable.toml).
LONG_WINDOW = SimConfig(scenario=Scenario(rules=(Rule(**QUICK, abortable_ms=60_000),)))


def final_status(messages):
    (response,) = [m for m in messages if m.type == MessageType.EXECUTE_TRANSACTION_RESPONSE]
    assert response.type == MessageType.EXECUTE_TRANSACTION_RESPONSE
    assert isinstance(response.body, ExecuteTransactionResponse)
    return response.body.transaction.status, response.body.transaction.status_details.code


def is_abortable(message):
    return message.type == MessageType.EXECUTE_TRANSACTION_UPDATE and message.body.abortable


async def test_abort_while_abortable(start_sim):
    url = await start_sim(LONG_WINDOW)
    async with Peer.connect(url) as peer:
        await peer.send(execute_request("t-1"))
        before = await peer.until("t-1", is_abortable)
        await peer.send(abort_request("a-1"))
        after = await peer.until_responses("a-1", "t-1")
    (abort_response,) = [m for m in after if m.tag == "a-1"]
    assert abort_response.type == MessageType.ABORT_TRANSACTION_RESPONSE
    assert abort_response.status == "OK"
    assert abort_response.resource == USB
    messages = before + [m for m in after if m.tag == "t-1"]
    assert states(messages)[-2:] == ["WAITING_FOR_CARD_PRESENTATION", "ABORTED"]
    assert final_status(messages) == ("ABORTED", "ABORTED_MERCHANT_ABORTED")
    assert messages[-1].status == "OK"
    assert messages[-1].type == MessageType.EXECUTE_TRANSACTION_RESPONSE


async def test_abort_when_not_abortable_still_ends_with_the_response(start_sim):
    # The processor takes 400 ms of real time, not abortable: the abort lands inside it.
    rule = Rule(**{**QUICK, "abortable_ms": 0, "processor_ms": 400})
    url = await start_sim(SimConfig(scenario=Scenario(rules=(rule,)), time_scale=1))
    async with Peer.connect(url) as peer:
        await peer.send(execute_request("t-1"))
        await peer.until(
            "t-1", lambda m: m.type.endswith("UPDATE") and m.body.state == "PROCESSING"
        )
        await peer.send(abort_request("a-1"))
        rest = await peer.until_responses("a-1", "t-1")
    (abort_response,) = [m for m in rest if m.tag == "a-1"]
    assert abort_response.type == MessageType.ABORT_TRANSACTION_RESPONSE
    assert abort_response.status == "ERROR"
    assert abort_response.error.type == "TRANSACTION_NO_LONGER_ABORTABLE"
    assert abort_response.error.source == "TRANSACTION"
    assert final_status(rest) == ("APPROVED", "APPROVED")


async def test_abort_with_nothing_running(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        await peer.transact("t-1")
        (late,) = await peer.request(abort_request("a-1"))
        (nowhere,) = await peer.request(abort_request("a-2", resource=None))
    assert late.error.type == "TRANSACTION_NO_LONGER_ABORTABLE"
    assert nowhere.error.type == "PARAMETER_MISSING"


async def test_abort_during_an_action(start_sim):
    url = await start_sim(SimConfig(scenario=load_scenario("signature"), time_scale=0))
    async with Peer.connect(url) as peer:
        await peer.send(execute_request("t-1"))
        before = await peer.until("t-1", lambda m: m.type == MessageType.EXECUTE_TRANSACTION_ACTION)
        await peer.send(abort_request("a-1"))
        rest = await peer.until_responses("a-1", "t-1")
    # the update just before the action said "not abortable": the open action counts
    assert updates(before)[-1].abortable is False
    assert updates(before)[-1].state_details == "PROCESSING_ACTION_REQUIRED"
    (abort_response,) = [m for m in rest if m.tag == "a-1"]
    assert abort_response.status == "OK"
    assert states(rest) == ["ABORTED"]
    assert final_status(rest) == ("ABORTED", "ABORTED_MERCHANT_ABORTED")


async def test_a_second_abort_is_refused(start_sim):
    url = await start_sim(LONG_WINDOW)
    async with Peer.connect(url) as peer:
        await peer.send(execute_request("t-1"))
        await peer.until("t-1", is_abortable)
        await peer.send(abort_request("a-1"))
        await peer.send(abort_request("a-2"))
        seen = await peer.until_responses("a-1", "a-2", "t-1")
    by_tag = {m.tag: m for m in seen if m.type == MessageType.ABORT_TRANSACTION_RESPONSE}
    assert by_tag["a-1"].status == "OK"
    assert by_tag["a-2"].error.type == "TRANSACTION_NO_LONGER_ABORTABLE"
    finals = [m for m in seen if m.type == MessageType.EXECUTE_TRANSACTION_RESPONSE]
    assert len(finals) == 1
    assert final_status(finals) == ("ABORTED", "ABORTED_MERCHANT_ABORTED")
