"""Many sessions at once: every message reaches the session and the tag it belongs to."""

from __future__ import annotations

import time
from decimal import Decimal

import trio

from p3log.client import P3Client
from p3log.pos.runner import SIGNATURE_PNG
from p3log.protocol.model import AmendParameters, ExecuteTransactionAction, Transaction
from p3log.sim import DevicesConfig, Rule, SimDevice
from tests.client.simulator import charge, start_sim

SESSIONS = 50
TRANSACTIONS = 20


async def test_50_sessions_x_20_transactions_without_cross_talk(
    nursery: trio.Nursery, transport: str
) -> None:
    devices = DevicesConfig(devices=tuple(SimDevice(f"reader{n}") for n in range(SESSIONS)))
    # Approvals, with every third one asking for a signature (the cycle is shared by all).
    rules = (Rule(), Rule(), Rule(signature=True))
    url = await start_sim(nursery, transport, *rules, devices=devices)
    identifiers: list[str] = []
    refunds: list[Transaction] = []

    async def pos(session: int) -> None:
        async with P3Client.connect(url) as client:
            offered = await client.login(f"shop{session}", "secret")
            device = offered[session]
            for number in range(1, TRANSACTIONS + 1):
                amount = Decimal(f"{session + 1}.{number:02d}")
                marker = f"s{session}-t{number}"
                async with client.execute(device, charge(amount, custom_identifier=marker)) as tx:
                    async for event in tx:
                        # Every update and action carries this transaction, nobody else's.
                        assert event.transaction is not None
                        assert event.transaction.custom_identifier == marker
                        assert event.transaction.amount == amount
                        if isinstance(event, ExecuteTransactionAction):
                            await tx.submit_signature(SIGNATURE_PNG)
                    result = await tx.result()
                assert tx.response is not None and tx.response.tag == tx.tag
                assert tx.response.resource == device.resource
                assert result.custom_identifier == marker and result.amount == amount
                assert result.status == "APPROVED" and result.identifier is not None
                identifiers.append(result.identifier)
                if number % 5 == 0:
                    refund = await client.amend(
                        AmendParameters(
                            type="REFUND",
                            referenced_transaction_identifier=result.identifier,
                            amount=Decimal("0.01"),
                        )
                    )
                    assert refund.custom_identifier == marker
                    refunds.append(refund)
            assert client.violations == []

    started = time.monotonic()
    with trio.fail_after(60):
        async with trio.open_nursery() as sessions:
            for session in range(SESSIONS):
                sessions.start_soon(pos, session)
    elapsed = time.monotonic() - started
    assert len(identifiers) == SESSIONS * TRANSACTIONS
    assert len(set(identifiers)) == len(identifiers)
    assert len(refunds) == SESSIONS * TRANSACTIONS // 5
    print(f"{transport}: {len(identifiers)} transactions in {elapsed:.2f} s")
