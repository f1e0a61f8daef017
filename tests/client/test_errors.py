"""Error statuses become typed exceptions; a dropped link becomes `ConnectionLost`."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from p3log.client import (
    AuthenticationFailed,
    ConnectionLost,
    DeviceBusy,
    P3Client,
    P3ErrorResponse,
    RequestRefused,
    UnknownReference,
)
from p3log.protocol.model import ExecuteTransactionUpdate
from p3log.sim import DevicesConfig, Rule
from tests.client.simulator import charge, start_sim

QUICK = {"connect_ms": 0, "register_ms": 0, "processor_ms": 0, "removal_ms": 0}


async def test_authentication_failed(nursery: trio.Nursery, transport: str) -> None:
    devices = DevicesConfig(merchant_identifier="shop", merchant_secret="right")
    url = await start_sim(nursery, transport, devices=devices)
    async with P3Client.connect(url) as client:
        with pytest.raises(AuthenticationFailed) as refused:
            await client.login("shop", "wrong")
        assert refused.value.error_type == "SERVER_AUTHENTICATION_FAILED"
        assert refused.value.error_source == "SERVER"
        assert refused.value.message.type == "LOGIN_MERCHANT_RESPONSE"
        assert client.devices == []
        assert len(await client.login("shop", "right")) == 2


async def test_busy_device(nursery: trio.Nursery, transport: str) -> None:
    url = await start_sim(nursery, transport, Rule(abortable_ms=60_000, **QUICK), time_scale=1.0)
    async with P3Client.connect(url) as first, P3Client.connect(url) as second:
        devices = await first.login("shop", "secret")
        await second.login("shop", "secret")
        with trio.fail_after(10):
            async with first.execute(devices[0], charge(5)) as holding:
                async for event in holding:
                    if isinstance(event, ExecuteTransactionUpdate) and event.abortable:
                        break
                # Another session: the server says the reader is busy.
                async with second.execute(devices[0], charge(6)) as other:
                    with pytest.raises(DeviceBusy) as busy:
                        await other.result()
                assert busy.value.error_type == "ACCESSORY_BUSY"
                assert busy.value.error_source == "ACCESSORY"
                # This session: the client refuses before the server has to.
                with pytest.raises(RequestRefused, match="still running on devices/usbReader"):
                    async with first.execute(devices[0], charge(7)):
                        pass
                await holding.abort()
            assert (await holding.result()).status == "ABORTED"


async def test_unknown_reference(nursery: trio.Nursery, transport: str) -> None:
    url = await start_sim(nursery, transport)
    async with P3Client.connect(url) as client:
        await client.login("shop", "secret")
        with pytest.raises(UnknownReference) as unknown:
            await client.amend({"type": "REFUND", "referencedTransactionIdentifier": "0" * 32})
        assert unknown.value.error_type == "TRANSACTION_REFERENCE_NOT_FOUND"
        assert unknown.value.message.type == "AMEND_TRANSACTION_RESPONSE"


async def test_server_error_and_decline(nursery: trio.Nursery, transport: str) -> None:
    failing = Rule(match_amount=Decimal(3), server_error_at="PROCESSING", **QUICK)
    declining = Rule(match_amount=Decimal(4), outcome="decline", **QUICK)
    url = await start_sim(nursery, transport, failing, declining, Rule(**QUICK))
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        async with client.execute(devices[0], charge(3)) as tx:
            with pytest.raises(P3ErrorResponse) as failed:
                await tx.result()
        assert type(failed.value) is P3ErrorResponse
        assert failed.value.error_type == "SERVER_TIMEOUT"
        assert failed.value.transaction is not None
        assert failed.value.transaction.status == "ERROR"
        # A decline is an answer, not an error: status OK, transaction DECLINED.
        async with client.execute(devices[0], charge(4)) as tx:
            declined = await tx.result()
        assert declined.status == "DECLINED"
        assert declined.status_details is not None
        assert declined.status_details.code == "DECLINED_INSUFFICIENT_FUNDS"


async def test_connection_lost_mid_transaction(nursery: trio.Nursery, transport: str) -> None:
    url = await start_sim(nursery, transport, Rule(drop_connection_at="PROCESSING", **QUICK))
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        with trio.fail_after(10):
            async with client.execute(devices[0], charge(9)) as tx:
                with pytest.raises(ConnectionLost, match="connection closed"):
                    await tx.result()
        assert tx.latest_update is not None and tx.latest_update.state == "PROCESSING"
        assert client.closed
        with pytest.raises(ConnectionLost):
            await client.login("shop", "secret")
    # Iterating raises it as well.
    async with P3Client.connect(url) as client:
        devices = await client.login("shop", "secret")
        async with client.execute(devices[0], charge(9)) as tx:
            with pytest.raises(ConnectionLost):
                async for _ in tx:
                    pass
