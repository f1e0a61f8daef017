"""Every flow of docs/protocol.md section 6 through `P3Client`, against the real simulator.

Each test runs over WebSocket and over framed TCP (the `transport` fixture).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from p3log.client import (
    InvalidParameter,
    NotAbortable,
    P3Client,
    RequestRefused,
    TransactionHandle,
)
from p3log.pos.runner import SIGNATURE_PNG
from p3log.protocol.model import (
    AmendParameters,
    AmendTransactionUpdate,
    ExecuteTransactionAction,
    ExecuteTransactionUpdate,
    TransactionParameters,
)
from p3log.sim import Rule
from tests.client.simulator import Spy, charge, start_sim

# Phases that take no time, and a presentation window long enough to abort in.
QUICK = {"connect_ms": 0, "register_ms": 0, "processor_ms": 0, "removal_ms": 0}
LONG_WINDOW = Rule(abortable_ms=60_000, **QUICK)


async def updates_until(tx: TransactionHandle, state: str) -> list[ExecuteTransactionUpdate]:
    seen = []
    async for event in tx:
        assert isinstance(event, ExecuteTransactionUpdate)
        seen.append(event)
        if event.state == state:
            return seen
    raise AssertionError(f"the transaction ended before {state}")


async def test_simple_transaction(nursery: trio.Nursery, transport: str) -> None:
    url = await start_sim(nursery, transport)
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        assert [d.resource for d in devices] == ["devices/usbReader", "devices/wifiReader"]
        assert client.devices == devices
        async with client.execute(devices[0], charge("12.50")) as tx:
            events = [event async for event in tx]
            transaction = await tx.result()
        assert all(isinstance(event, ExecuteTransactionUpdate) for event in events)
        states = [event.state for event in events if isinstance(event, ExecuteTransactionUpdate)]
        assert states[0] == "CONNECTING_TO_ACCESSORY"
        assert "WAITING_FOR_CARD_PRESENTATION" in states
        assert states[-1] == "APPROVED"
        assert transaction.status == "APPROVED"
        assert transaction.amount == Decimal("12.50") and transaction.currency == "EUR"
        assert transaction.identifier is not None and len(transaction.identifier) == 32
        assert {e.transaction.identifier for e in events if e.transaction} == {
            transaction.identifier
        }
        assert transaction.merchant_receipt is not None
        assert tx.response is not None and tx.response.tag == tx.tag
        assert tx.done and not tx.abortable and tx.update_count == len(events)
        assert client.violations == []


async def test_abort(nursery: trio.Nursery, transport: str) -> None:
    url = await start_sim(nursery, transport, LONG_WINDOW, time_scale=1.0)
    spy = Spy()
    async with P3Client.connect(url, wrap_channel=spy) as client:
        devices = await client.login("shop", "secret")
        with trio.fail_after(10):
            async with client.execute(devices[0], charge(5)) as tx:
                window = await updates_until(tx, "WAITING_FOR_CARD_PRESENTATION")
                assert window[-1].abortable is True and tx.abortable
                response = await tx.abort()
                transaction = await tx.result()
    assert response.status == "OK" and response.tag != tx.tag
    assert tx.abort_requested
    assert transaction.status == "ABORTED"
    assert transaction.status_details is not None
    assert transaction.status_details.code == "ABORTED_MERCHANT_ABORTED"
    abort = spy.sent_json(-1)
    assert abort["type"] == "ABORT_TRANSACTION_REQUEST"
    assert abort["resource"] == "devices/usbReader"
    assert abort["tag"] not in (tx.tag, None)
    assert abort["abortTransactionRequest"] == {}
    assert client.violations == []


@pytest.mark.parametrize("answer", ["png", "on_receipt"])
async def test_signature_action(nursery: trio.Nursery, transport: str, answer: str) -> None:
    url = await start_sim(nursery, transport, Rule(signature=True, **QUICK))
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        actions = []
        async with client.execute(devices[1], charge(30)) as tx:
            async for event in tx:
                if isinstance(event, ExecuteTransactionAction):
                    actions.append(event)
                    assert event.action == "SIGNATURE"
                    assert tx.open_action is event and tx.abortable
                    assert tx.latest_update is not None and not tx.latest_update.abortable
                    if answer == "png":
                        response = await tx.submit_signature(SIGNATURE_PNG)
                    else:
                        response = await tx.submit_signature(on_receipt=True)
                    assert response.status == "OK"
                    assert tx.open_action is None
            transaction = await tx.result()
        assert len(actions) == 1 and tx.action_count == 1
        assert transaction.status == "APPROVED"
        assert transaction.payment_details is not None
        assert transaction.payment_details.customer_verification == "SIGNATURE"
        assert client.violations == []


async def test_a_refused_signature_keeps_the_action_open(
    nursery: trio.Nursery, transport: str
) -> None:
    url = await start_sim(nursery, transport, Rule(signature=True, **QUICK))
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        async with client.execute(devices[0], charge(30)) as tx:
            async for event in tx:
                if isinstance(event, ExecuteTransactionAction):
                    with pytest.raises(InvalidParameter) as refused:
                        await tx.submit_signature(b"not a png")
                    assert refused.value.error_type == "PARAMETER_INVALID"
                    assert refused.value.error_source == "PARAMETER"
                    assert tx.open_action is event and tx.abortable
                    await tx.submit_signature(SIGNATURE_PNG)
            assert (await tx.result()).status == "APPROVED"


async def test_abort_during_an_action(nursery: trio.Nursery, transport: str) -> None:
    url = await start_sim(nursery, transport, Rule(signature=True, **QUICK))
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        async with client.execute(devices[0], charge(30)) as tx:
            async for event in tx:
                if isinstance(event, ExecuteTransactionAction):
                    # The update before the action said not abortable; the open action is.
                    assert tx.latest_update is not None
                    assert tx.latest_update.abortable is False
                    assert tx.abortable
                    assert (await tx.abort()).status == "OK"
                    assert tx.open_action is None
            transaction = await tx.result()
        assert transaction.status == "ABORTED"
        assert client.violations == []


async def test_refund_capture_and_tip_adjust(nursery: trio.Nursery, transport: str) -> None:
    url = await start_sim(nursery, transport)
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")

        async def run(params: TransactionParameters) -> str:
            async with client.execute(devices[0], params) as tx:
                transaction = await tx.result()
            assert transaction.identifier is not None
            return transaction.identifier

        sale = await run(charge(20))
        updates: list[AmendTransactionUpdate] = []
        refund = await client.amend(
            AmendParameters(
                type="REFUND", referenced_transaction_identifier=sale, amount=Decimal(5)
            ),
            on_update=updates.append,
        )
        assert refund.type == "REFUND" and refund.status == "APPROVED"
        assert refund.amount == Decimal(5) and refund.identifier not in (None, sale)
        assert [update.state for update in updates] == ["PROCESSING", "APPROVED"]

        preauth = await run(charge(40, auto_capture=False))
        capture = await client.amend(
            {"type": "CAPTURE", "referencedTransactionIdentifier": preauth}
        )
        assert capture.identifier == preauth and capture.captured is True

        tippable = await run(charge(10, tip_adjustable=True))
        tipped = await client.amend(
            {"type": "TIP_ADJUST", "referencedTransactionIdentifier": tippable, "amount": 2}
        )
        assert tipped.amount == Decimal(12)
        assert tipped.details is not None and tipped.details.included_tip_amount == Decimal(2)
        assert client.violations == []


async def test_abort_refused_locally_then_forced(nursery: trio.Nursery, transport: str) -> None:
    # No presentation window; processing takes half a second, not abortable.
    rule = Rule(connect_ms=0, register_ms=0, abortable_ms=0, processor_ms=500)
    url = await start_sim(nursery, transport, rule, time_scale=1.0)
    spy = Spy()
    async with P3Client.connect(url, wrap_channel=spy) as client:
        devices = await client.login("shop", "secret")
        async with client.execute(devices[0], charge(8)) as tx:
            await updates_until(tx, "PROCESSING")
            assert not tx.abortable
            sent_before = len(spy.sent)
            with pytest.raises(RequestRefused, match="not abortable"):
                await tx.abort()
            assert len(spy.sent) == sent_before  # nothing went out
            with pytest.raises(NotAbortable) as refused:
                await tx.abort(force=True)
            assert refused.value.error_type == "TRANSACTION_NO_LONGER_ABORTABLE"
            assert refused.value.message.type == "ABORT_TRANSACTION_RESPONSE"
            transaction = await tx.result()  # the execute still ends, on its own terms
        assert transaction.status == "APPROVED"
        assert client.violations == []


async def test_leaving_the_block_waits_for_the_final_response(
    nursery: trio.Nursery, transport: str
) -> None:
    url = await start_sim(nursery, transport, LONG_WINDOW, time_scale=1.0)
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        with trio.fail_after(10):
            async with client.execute(devices[0], charge(5)) as tx:
                await updates_until(tx, "WAITING_FOR_CARD_PRESENTATION")
                await tx.abort()
            assert tx.done  # without a call to result()
            assert tx.response is not None and tx.response.type == "EXECUTE_TRANSACTION_RESPONSE"
            # The device is free again for this client.
            async with client.execute(devices[0], charge(6)) as again:
                await updates_until(again, "WAITING_FOR_CARD_PRESENTATION")
                await again.abort()
        assert (await again.result()).status == "ABORTED"
