"""Refunds, captures and tip adjusts of a transaction the simulator knows.

`plan_amend` is pure: it decides from the referenced transaction (and the time it is
given) what the amend does, or why it cannot. An accepted plan takes effect at once
(so two refunds in flight cannot refund more than was charged); `AmendFlow` then
plays the updates and the response:

    PROCESSING  PROCESSING_WAITING_FOR_PROCESSOR_APPROVAL  (abortable: false)  amend_ms
    APPROVED    APPROVED
    -> AMEND_TRANSACTION_RESPONSE {transaction}

- REFUND: a new transaction (new identifier, type REFUND) of `amount`, or of what
  is left to refund; the original must be APPROVED and have that much left.
- CAPTURE: the original (APPROVED, not yet captured) with `captured: true`, and
  `amount` when given (no more than authorised).
- TIP_ADJUST: the original (created with `tipAdjustable: true`) with the tip in
  `details.includedTipAmount` and added to its amount.
"""

from __future__ import annotations

from decimal import Decimal

import attrs
import trio

from p3log.protocol.model import (
    AmendParameters,
    AmendTransactionResponse,
    AmendTransactionUpdate,
    Message,
    MessageType,
    StatusDetails,
    Transaction,
    TransactionDetails,
)
from p3log.sim.payserver import PayServer
from p3log.sim.receipts import receipts
from p3log.sim.replies import Echo, Problem, ok_reply
from p3log.sim.running import Link

__all__ = ["AmendFlow", "AmendPlan", "plan_amend"]


@attrs.frozen
class AmendPlan:
    kind: str  # REFUND, CAPTURE or TIP_ADJUST
    result: Transaction  # what the response carries
    original: Transaction  # the referenced transaction afterwards
    refund: Decimal = Decimal(0)


def plan_amend(
    params: AmendParameters,
    original: Transaction,
    refunded: Decimal,
    new_identifier: str,
    merchant: str,
    now_ms: int,
) -> AmendPlan | Problem:
    """What the amend does to `original` (of which `refunded` was refunded already), at
    `now_ms` (Unix milliseconds, a refund's `createdTimestamp`)."""
    kind = params.type or ""
    if original.status != "APPROVED":
        return Problem.invalid(
            f"transaction {original.identifier} is {original.status}, not APPROVED"
        )
    if params.currency is not None and params.currency != original.currency:
        return Problem.invalid(f"currency {params.currency} is not the transaction's currency")
    authorised = original.amount or Decimal(0)
    if kind == "REFUND":
        left = authorised - refunded
        amount = params.amount if params.amount is not None else left
        if left <= 0 or amount > left:
            return Problem.invalid(f"a refund of {amount} exceeds the {left} left to refund")
        refund = Transaction(
            identifier=new_identifier,
            amount=amount,
            currency=original.currency,
            type="REFUND",
            status="APPROVED",
            status_details=StatusDetails(code="APPROVED"),
            mode=original.mode,
            captured=True,
            created_timestamp=now_ms,
            payment_details=original.payment_details,
            card_details=original.card_details,
            custom_identifier=original.custom_identifier,
            subject=original.subject,
        )
        return AmendPlan(kind, _with_receipts(refund, merchant), original, amount)
    if kind == "CAPTURE":
        if original.captured:
            return Problem.invalid(f"transaction {original.identifier} is already captured")
        amount = params.amount if params.amount is not None else authorised
        if amount > authorised:
            return Problem.invalid(f"a capture of {amount} exceeds the {authorised} authorised")
        captured = _with_receipts(attrs.evolve(original, captured=True, amount=amount), merchant)
        return AmendPlan(kind, captured, captured)
    # TIP_ADJUST (check_amend has refused every other type)
    details = original.details or TransactionDetails()
    if details.tip_adjust_status is None:
        return Problem.invalid(
            f"transaction {original.identifier} was not made with tipAdjustable: true"
        )
    tip = params.amount or Decimal(0)
    base = authorised - (details.included_tip_amount or Decimal(0))
    adjusted = attrs.evolve(
        original,
        amount=base + tip,
        details=attrs.evolve(details, included_tip_amount=tip, tip_adjust_status="TIP_ADJUSTED"),
    )
    adjusted = _with_receipts(adjusted, merchant)
    return AmendPlan(kind, adjusted, adjusted)


def _with_receipts(txn: Transaction, merchant: str) -> Transaction:
    merchant_receipt, customer_receipt = receipts(txn, merchant)
    return attrs.evolve(txn, merchant_receipt=merchant_receipt, customer_receipt=customer_receipt)


_LABELS = {"REFUND": "Refund", "CAPTURE": "Capture", "TIP_ADJUST": "Tip adjust"}


class AmendFlow:
    """Plays an accepted amend's updates and response."""

    def __init__(self, request: Message, plan: AmendPlan, server: PayServer, link: Link) -> None:
        assert request.tag is not None
        self._tag = request.tag
        self._echo = Echo.of(request)
        self._plan = plan
        self._server = server
        self._link = link
        self._ended = False

    async def run(self) -> None:
        label = _LABELS[self._plan.kind]
        try:
            await self._update("PROCESSING", "PROCESSING_WAITING_FOR_PROCESSOR_APPROVAL", label)
            await trio.sleep(self._server.config.scenario.amend_ms / 1000 * self._scale)
            await self._update("APPROVED", "APPROVED", label)
            self._end()
            body = AmendTransactionResponse(transaction=self._plan.result)
            await self._link.send(
                ok_reply(MessageType.AMEND_TRANSACTION_RESPONSE, self._echo, body)
            )
        finally:
            if not self._ended:
                self._end()

    @property
    def _scale(self) -> float:
        return self._server.config.time_scale

    async def _update(self, state: str, details: str, label: str) -> None:
        second = "approved" if state == "APPROVED" else "please wait"
        body = AmendTransactionUpdate(
            state=state,
            state_details=details,
            information=[label, second],
            abortable=False,
            transaction=self._plan.result,
        )
        await self._link.send(ok_reply(MessageType.AMEND_TRANSACTION_UPDATE, self._echo, body))

    def _end(self) -> None:
        self._ended = True
        self._link.forget(self._tag)
