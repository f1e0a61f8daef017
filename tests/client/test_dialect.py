"""The client speaks whatever dialect it is given: every [gap] of docs/protocol.md differs here."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from p3log.client import InvalidParameter, NotAbortable, P3Client
from p3log.pos.runner import SIGNATURE_PNG
from p3log.protocol.dialect import (
    AbortRules,
    ActionRules,
    Dialect,
    ErrorRules,
    SignatureRules,
    TcpRules,
)
from p3log.protocol.model import ExecuteTransactionAction, ExecuteTransactionUpdate
from p3log.sim import Rule
from tests.client.simulator import Spy, charge, start_sim

ODD = Dialect(
    tcp=TcpRules(framing="newline"),
    abort=AbortRules(
        request_type="ABORT_OPERATION_REQUEST",
        response_type="ABORT_OPERATION_RESPONSE",
        correlation="body_tag",
        tag_key="operationTag",
        not_abortable_error="OPERATION_NOT_ABORTABLE",
    ),
    action=ActionRules(action_key="kind", signature_action="CUSTOMER_SIGNATURE"),
    signature=SignatureRules(signature_key="png", on_receipt_key="paperSignature"),
    error=ErrorRules(type_key="code", source_key="origin", message_key="text"),
)
QUICK = {"connect_ms": 0, "register_ms": 0, "processor_ms": 0, "removal_ms": 0}


async def test_abort_and_signature_in_another_dialect(
    nursery: trio.Nursery, transport: str
) -> None:
    window = Rule(match_amount=Decimal(1), abortable_ms=60_000, **QUICK)
    signing = Rule(signature=True, abortable_ms=0, **QUICK)
    url = await start_sim(nursery, transport, window, signing, time_scale=1.0, dialect=ODD)
    spy = Spy()
    async with P3Client.connect(url, dialect=ODD, wrap_channel=spy) as client:
        devices = await client.login("shop", "secret")
        with trio.fail_after(10):
            async with client.execute(devices[0], charge(1)) as tx:
                async for event in tx:
                    if isinstance(event, ExecuteTransactionUpdate) and event.abortable:
                        assert (await tx.abort()).type == "ABORT_OPERATION_RESPONSE"
                        with pytest.raises(NotAbortable) as again:
                            await tx.abort(force=True)  # a second abort is refused
                        assert again.value.error_type == "OPERATION_NOT_ABORTABLE"
                assert (await tx.result()).status == "ABORTED"
        abort = spy.sent_json(-2)
        assert abort["type"] == "ABORT_OPERATION_REQUEST"
        assert abort["abortOperationRequest"] == {"operationTag": tx.tag}

        async with client.execute(devices[0], charge(2)) as tx:
            async for event in tx:
                if isinstance(event, ExecuteTransactionAction):
                    assert event.action == "CUSTOMER_SIGNATURE"
                    with pytest.raises(InvalidParameter) as refused:
                        await tx.submit_signature(b"no png")
                    assert refused.value.error_source == "PARAMETER"
                    assert refused.value.error_message
                    await tx.submit_signature(SIGNATURE_PNG)
            assert (await tx.result()).status == "APPROVED"
        assert set(spy.sent_json(-1)["submitSignatureRequest"]) == {"png"}
    assert client.violations == []
