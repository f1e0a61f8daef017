"""Execute: the update sequence, the transaction object, outcomes, faults, busy devices."""

from __future__ import annotations

import re

import pytest
import trio

from p3log.net.channel import ChannelClosed
from p3log.protocol import ExecuteTransactionResponse, MessageType
from p3log.sim import Rule, Scenario, SimConfig, load_scenario, serve_sim
from tests.sim.conftest import url_for
from tests.sim.peer import (
    USB,
    WIFI,
    Peer,
    execute_request,
    signature_request,
    states,
    updates,
)


def config_with(*rules: Rule, **kwargs) -> SimConfig:
    return SimConfig(scenario=Scenario(rules=rules), **{"time_scale": 0, **kwargs})


def final_transaction(messages):
    response = messages[-1]
    assert response.type == MessageType.EXECUTE_TRANSACTION_RESPONSE
    assert isinstance(response.body, ExecuteTransactionResponse)
    assert response.body.transaction is not None
    return response.body.transaction


async def test_a_simple_approval(start_sim):
    url = await start_sim(config_with(Rule(pin_ms=1000)))
    async with Peer.connect(url) as peer:
        messages = await peer.transact("t-1", amount="12.50")
    assert {m.tag for m in messages} == {"t-1"}
    assert all(m.resource == USB and m.status == "OK" for m in messages)
    assert states(messages) == [
        "CONNECTING_TO_ACCESSORY",
        "INITIALIZING_TRANSACTION",
        "WAITING_FOR_CARD_PRESENTATION",
        "WAITING_FOR_CARD_DATA_INPUT",
        "PROCESSING",
        "WAITING_FOR_CARD_REMOVAL",
        "APPROVED",
    ]
    # abortable turns true for the card presentation, and false again after it
    assert [u.abortable for u in updates(messages)] == [False, False, True] + [False] * 4
    identifiers = {u.transaction.identifier for u in updates(messages)}
    assert len(identifiers) == 1
    (identifier,) = identifiers
    assert re.fullmatch(r"[0-9a-f]{32}", identifier)
    txn = final_transaction(messages)
    assert txn.identifier == identifier
    assert txn.status == "APPROVED"
    assert str(txn.amount) == "12.50" and txn.currency == "EUR"
    assert txn.captured is True
    assert txn.payment_details.customer_verification == "PIN"
    assert txn.payment_details.source == "ICC"
    assert re.fullmatch(r"\*{11,12}[0-9]{4}", txn.card_details.masked_card_number)
    for receipt in (txn.merchant_receipt, txn.customer_receipt):
        assert receipt is not None and receipt.lines
        assert receipt.data["IDENTIFIER"]["value"] == identifier
        assert receipt.data["AMOUNT_AND_CURRENCY"] == {
            "key": "AMOUNT_AND_CURRENCY",
            "label": "Amount",
            "value": "EUR 12.50",
        }


async def test_the_transaction_status_moves_with_the_states(start_sim):
    url = await start_sim(config_with(Rule()))
    async with Peer.connect(url) as peer:
        messages = await peer.transact("t-1")
    seen = [(u.state, u.transaction.status) for u in updates(messages)]
    assert seen == [
        ("CONNECTING_TO_ACCESSORY", "INITIALIZED"),
        ("INITIALIZING_TRANSACTION", "INITIALIZED"),
        ("WAITING_FOR_CARD_PRESENTATION", "INITIALIZED"),
        ("PROCESSING", "PENDING"),
        ("APPROVED", "APPROVED"),
    ]
    first = updates(messages)[0].transaction
    assert first.created_timestamp == 0 and first.card_details is None
    assert updates(messages)[1].transaction.created_timestamp > 0


async def test_a_decline_carries_its_code_and_no_receipts(start_sim):
    url = await start_sim(SimConfig(scenario=load_scenario("decline"), time_scale=0))
    async with Peer.connect(url) as peer:
        messages = await peer.transact("t-1")
    assert states(messages)[-1] == "DECLINED"
    assert messages[-1].status == "OK"
    txn = final_transaction(messages)
    assert txn.status == "DECLINED"
    assert txn.status_details.code == "DECLINED_INSUFFICIENT_FUNDS"
    assert txn.merchant_receipt is None and txn.customer_receipt is None
    assert updates(messages)[-1].information == ["Declined", "Insufficient funds"]


async def test_information_is_always_exactly_two_strings(start_sim):
    url = await start_sim(SimConfig(scenario=load_scenario("default"), time_scale=0))
    async with Peer.connect(url) as peer:
        seen = []
        for n, amount in enumerate(["10.00"] * 5 + ["90.01", "90.02", "90.03"]):
            seen += await peer.transact(f"t-{n}", amount=amount)
        assert {states(seen)[-1]} == {"FAILED"}  # 90.03 is the server error
    bodies = updates(seen)
    assert len(bodies) > 40
    for body in bodies:
        assert isinstance(body.information, list) and len(body.information) == 2
        assert all(isinstance(line, str) and line for line in body.information)


async def test_a_server_error_mid_transaction(start_sim):
    url = await start_sim(SimConfig(scenario=load_scenario("server_error"), time_scale=0))
    async with Peer.connect(url) as peer:
        messages = await peer.transact("t-1")
        after = await peer.transact("t-2")  # the device is free again
    assert states(messages)[-2:] == ["PROCESSING", "FAILED"]
    response = messages[-1]
    assert response.status == "ERROR"
    assert response.error.type == "SERVER_TIMEOUT" and response.error.source == "SERVER"
    txn = final_transaction(messages)
    assert txn.status == "ERROR" and txn.status_details.code == "ERROR_SERVER_TIMEOUT"
    assert txn.merchant_receipt is None
    assert after[-1].type == MessageType.EXECUTE_TRANSACTION_RESPONSE


async def test_a_dropped_connection_mid_transaction_frees_the_device(start_sim):
    dropping = Rule(drop_connection_at="PROCESSING")
    url = await start_sim(config_with(dropping, Rule()))
    async with Peer.connect(url) as peer:
        await peer.send(execute_request("t-1"))
        seen = []
        with pytest.raises(ChannelClosed):
            while True:
                seen.append(await peer.receive())
    assert states(seen)[-1] == "PROCESSING"
    assert all(m.type == MessageType.EXECUTE_TRANSACTION_UPDATE for m in seen)
    async with Peer.connect(url) as again:
        messages = await again.transact("t-2")
    assert final_transaction(messages).status == "APPROVED"


async def test_a_second_execute_on_a_busy_device(start_sim):
    url = await start_sim(config_with(Rule(signature=True)))
    async with Peer.connect(url) as first, Peer.connect(url) as second:
        await first.send(execute_request("t-1"))
        await first.until("t-1", lambda m: m.type == MessageType.EXECUTE_TRANSACTION_ACTION)
        (same_session,) = await first.request(execute_request("t-2"))
        (other_session,) = await second.request(execute_request("t-3"))
        (done,) = await first.request(signature_request("s-1", on_receipt=True))
        rest = await first.until_response("t-1")
    assert same_session.tag == "t-2"
    assert same_session.type == MessageType.EXECUTE_TRANSACTION_RESPONSE
    assert same_session.error.type == "TRANSACTION_BUSY"
    assert other_session.tag == "t-3"
    assert other_session.error.type == "ACCESSORY_BUSY"
    assert done.status == "OK"
    assert final_transaction(rest).status == "APPROVED"


async def test_an_unknown_resource(start_sim):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        (response,) = await peer.request(execute_request("t-1", "devices/nope"))
    assert response.tag == "t-1"
    assert response.resource == "devices/nope"
    assert response.error.type == "ACCESSORY_NOT_FOUND"
    assert response.error.source == "ACCESSORY"


@pytest.mark.parametrize(
    ("change", "error_type", "named"),
    [
        ({"amount": None}, "PARAMETER_MISSING", "amount"),
        ({"currency": None}, "PARAMETER_MISSING", "currency"),
        ({"auto_capture": None}, "PARAMETER_MISSING", "autoCapture"),
        ({"resource": None}, "PARAMETER_MISSING", "resource"),
        ({"amount": "-1"}, "PARAMETER_INVALID", "amount"),
        ({"currency": "euro"}, "PARAMETER_INVALID", "currency"),
        ({"type": "GIFT"}, "PARAMETER_INVALID", "type"),
    ],
)
async def test_bad_execute_parameters(start_sim, change, error_type, named):
    url = await start_sim()
    async with Peer.connect(url) as peer:
        (response,) = await peer.request(execute_request("t-1", **change))
        after = await peer.transact("t-2")  # nothing was left running
    assert response.error.type == error_type
    assert named in response.error.message
    assert after[-1].status == "OK"


async def test_two_sessions_on_two_devices_at_once(start_sim):
    url = await start_sim(SimConfig(scenario=load_scenario("signature"), time_scale=0))
    results = {}
    both_waiting = trio.Event()
    waiting = 0

    async def pos(resource: str, tag: str) -> None:
        nonlocal waiting
        async with Peer.connect(url) as peer:
            await peer.send(execute_request(tag, resource))
            await peer.until(tag, lambda m: m.type == MessageType.EXECUTE_TRANSACTION_ACTION)
            waiting += 1
            if waiting == 2:
                both_waiting.set()
            await both_waiting.wait()  # both actions are open at the same time
            await peer.request(signature_request("s", resource=resource, on_receipt=True))
            results[resource] = await peer.until_response(tag)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pos, USB, "a-1")
        nursery.start_soon(pos, WIFI, "b-1")
    assert {r: final_transaction(m).status for r, m in results.items()} == {
        USB: "APPROVED",
        WIFI: "APPROVED",
    }
    assert final_transaction(results[USB]).identifier != final_transaction(results[WIFI]).identifier


def _fingerprint(messages):
    out = []
    for m in messages:
        body = m.body
        txn = getattr(body, "transaction", None)
        out.append(
            (
                m.type,
                m.tag,
                m.status,
                getattr(body, "state", None),
                getattr(body, "state_details", None),
                getattr(body, "abortable", None),
                tuple(getattr(body, "information", None) or ()),
                txn and txn.identifier,
                txn and txn.status,
                txn and txn.card_details and txn.card_details.masked_card_number,
            )
        )
    return out


async def _script(url: str):
    async with Peer.connect(url) as peer:
        seen = []
        for n in range(7):
            seen += await peer.transact(f"t-{n}", amount=f"{10 + n}.00")
        return _fingerprint(seen)


async def test_the_same_seed_gives_the_same_run(nursery, transport):
    async def run(seed: int):
        config = SimConfig(scenario=load_scenario("default"), seed=seed, time_scale=0)
        port = await nursery.start(serve_sim, config, "127.0.0.1", 0, transport)
        return await _script(url_for(transport, port))

    first, again, other = await run(42), await run(42), await run(43)
    assert first == again
    identifiers = [row[7] for row in first if row[7]]
    assert len(set(identifiers)) == 7
    assert identifiers != [row[7] for row in other if row[7]]
