"""`plan_amend` is pure: the same inputs give the same plan, the time included."""

from __future__ import annotations

from decimal import Decimal

from p3log.protocol.model import AmendParameters, StatusDetails, Transaction
from p3log.sim.amend import AmendPlan, plan_amend


def test_a_refund_is_created_at_the_time_it_is_given() -> None:
    original = Transaction(
        identifier="T1",
        amount=Decimal("10.00"),
        currency="EUR",
        type="PURCHASE",
        status="APPROVED",
        status_details=StatusDetails(code="APPROVED"),
    )
    params = AmendParameters(type="REFUND", amount=Decimal("4.00"))
    first = plan_amend(params, original, Decimal(0), "R1", "Shop", now_ms=1_700_000_000_123)
    again = plan_amend(params, original, Decimal(0), "R1", "Shop", now_ms=1_700_000_000_123)
    assert isinstance(first, AmendPlan) and first == again
    assert first.result.created_timestamp == 1_700_000_000_123
