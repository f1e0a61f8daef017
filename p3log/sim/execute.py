"""One execute, from its first update to its final response.

The sequence of updates (state, stateDetails, the rule's phase length); only the
card presentation says `abortable: true`, and an open action counts as abortable:

  CONNECTING_TO_ACCESSORY        CONNECTING_TO_ACCESSORY_WAITING_FOR_READER   connect_ms
  INITIALIZING_TRANSACTION       INITIALIZING_TRANSACTION_REGISTERING         register_ms
  WAITING_FOR_CARD_PRESENTATION  PROCESSING_WAITING_FOR_CARD_PRESENTATION     abortable_ms
  WAITING_FOR_CARD_DATA_INPUT    PROCESSING_WAITING_FOR_PIN                   pin_ms (chip)
  PROCESSING                     PROCESSING_WAITING_FOR_PROCESSOR_APPROVAL    processor_ms
  PROCESSING                     PROCESSING_ACTION_REQUIRED, then the action  (signature)
  WAITING_FOR_CARD_REMOVAL       PROCESSING_WAITING_FOR_CARD_REMOVAL          removal_ms (chip)
  APPROVED or DECLINED           APPROVED or DECLINED
  -> EXECUTE_TRANSACTION_RESPONSE

An accepted abort ends it with ABORTED / ABORTED (code ABORTED_MERCHANT_ABORTED). A
server error at a state sends that state's update, then FAILED / FAILED and an error
response; a drop at a state sends that state's update, then closes the connection.

The transaction object rides on every update: identifier from the first, the
created timestamp from INITIALIZING_TRANSACTION, card details once the card is
presented, status INITIALIZED -> PENDING (processing) -> the final status, and
receipts when approved.
"""

from __future__ import annotations

import time
from random import Random

import attrs
import trio

from p3log.protocol.model import (
    ExecuteTransactionAction,
    ExecuteTransactionRequest,
    ExecuteTransactionResponse,
    ExecuteTransactionUpdate,
    Message,
    MessageType,
    StatusDetails,
    Transaction,
    TransactionDetails,
)
from p3log.sim.card import draw_card
from p3log.sim.checks import SignatureAnswer
from p3log.sim.pacing import phase_seconds
from p3log.sim.payserver import PayServer
from p3log.sim.receipts import receipts
from p3log.sim.replies import Echo, Problem, error_reply, ok_reply
from p3log.sim.running import ExecuteRun, Link
from p3log.sim.scenario import Rule

__all__ = ["ExecuteFlow"]


class _ServerError(Exception):
    def __init__(self, state: str) -> None:
        self.state = state


class _Dropped(Exception):
    pass


class ExecuteFlow:
    """Runs one accepted execute; the session has validated the request and claimed the device."""

    def __init__(
        self,
        run: ExecuteRun,
        request: Message,
        rule: Rule,
        rng: Random,
        server: PayServer,
        link: Link,
    ) -> None:
        assert isinstance(request.body, ExecuteTransactionRequest)
        assert request.body.transaction_parameters is not None
        self._params = request.body.transaction_parameters
        self._run = run
        self._echo = Echo.of(request)
        self._rule = rule
        self._rng = rng
        self._server = server
        self._link = link
        self._dialect = server.config.dialect
        # Every RNG draw that is not a delay happens here, in a fixed order.
        self._card = draw_card(rng, rule.scheme, rule.chip)
        self._txn = _new_transaction(server.new_identifier(rng), request.body)
        self._ended = False

    async def run(self) -> None:
        try:
            await self._steps()
        except _ServerError as fault:
            await self._fail(fault.state)
        except _Dropped:
            pass
        finally:
            if not self._ended:  # the session went away under us
                self._end(status="INCONCLUSIVE")

    async def _steps(self) -> None:
        rule = self._rule
        amount = _money(self._txn)
        await self._enter(
            "CONNECTING_TO_ACCESSORY",
            "CONNECTING_TO_ACCESSORY_WAITING_FOR_READER",
            ("Connecting", "to the reader"),
        )
        await self._pause(rule.connect_ms)
        self._txn = attrs.evolve(self._txn, created_timestamp=time.time_ns() // 1_000_000)
        await self._enter(
            "INITIALIZING_TRANSACTION",
            "INITIALIZING_TRANSACTION_REGISTERING",
            ("Registering", amount),
        )
        await self._pause(rule.register_ms)
        await self._enter(
            "WAITING_FOR_CARD_PRESENTATION",
            "PROCESSING_WAITING_FOR_CARD_PRESENTATION",
            ("Present card", amount),
            abortable=True,
        )
        if await self._abortable_pause(rule.abortable_ms):
            return await self._aborted()
        self._present_card()
        if rule.chip:
            await self._enter(
                "WAITING_FOR_CARD_DATA_INPUT", "PROCESSING_WAITING_FOR_PIN", ("Enter PIN", amount)
            )
            await self._pause(rule.pin_ms)
        self._txn = attrs.evolve(self._txn, status="PENDING")
        await self._enter(
            "PROCESSING", "PROCESSING_WAITING_FOR_PROCESSOR_APPROVAL", ("Processing", "please wait")
        )
        await self._pause(rule.processor_ms)
        answer = None
        if rule.signature:
            answer = await self._ask_for_signature()
            if answer is None:
                return await self._aborted()
        if rule.chip:
            await self._enter(
                "WAITING_FOR_CARD_REMOVAL",
                "PROCESSING_WAITING_FOR_CARD_REMOVAL",
                ("Remove card", amount),
            )
            await self._pause(rule.removal_ms)
        if rule.outcome == "approve":
            await self._approved(answer)
        else:
            await self._declined()

    # --- steps ---

    async def _enter(
        self, state: str, details: str, information: tuple[str, str], abortable: bool = False
    ) -> None:
        """Send the update of a new state; then strike if the rule has a fault here."""
        await self._update(state, details, information, abortable)
        if self._rule.server_error_at == state:
            raise _ServerError(state)
        if self._rule.drop_connection_at == state:
            self._end(status="INCONCLUSIVE")
            await self._link.drop()
            raise _Dropped

    async def _update(
        self, state: str, details: str, information: tuple[str, str], abortable: bool
    ) -> None:
        self._run.abortable = abortable
        self._server.record(self._txn)
        body = ExecuteTransactionUpdate(
            state=state,
            state_details=details,
            information=list(information),
            abortable=abortable,
            transaction=self._txn,
        )
        await self._link.send(ok_reply(MessageType.EXECUTE_TRANSACTION_UPDATE, self._echo, body))

    async def _pause(self, ms: int) -> None:
        await trio.sleep(self._seconds(ms))

    async def _abortable_pause(self, ms: int) -> bool:
        """Wait out the window unless an abort comes first; True when aborted."""
        with trio.move_on_after(self._seconds(ms)):
            await self._run.wake.wait()
        if self._run.abort_requested:
            return True
        self._run.abortable = False  # the window closes now, before the next update says so
        return False

    def _seconds(self, ms: int) -> float:
        scale = self._server.config.time_scale
        return phase_seconds(ms, time_scale=scale, jitter=self._rule.jitter, rng=self._rng)

    def _present_card(self) -> None:
        verification = {
            (True, True): "PIN_AND_SIGNATURE",
            (True, False): "PIN",
            (False, True): "SIGNATURE",
            (False, False): "NONE",
        }[self._rule.chip, self._rule.signature]
        self._txn = attrs.evolve(
            self._txn,
            payment_details=self._card.payment_details(verification),
            card_details=self._card.card_details(),
        )

    async def _ask_for_signature(self) -> SignatureAnswer | None:
        """Send the action and wait for its answer; None when the POS aborted instead."""
        await self._update(
            "PROCESSING", "PROCESSING_ACTION_REQUIRED", ("Please sign", "on the terminal"), False
        )
        self._run.action_open = True
        body = ExecuteTransactionAction(
            action=self._dialect.action.signature_action, transaction=self._txn
        )
        await self._link.send(ok_reply(MessageType.EXECUTE_TRANSACTION_ACTION, self._echo, body))
        await self._run.wake.wait()
        return None if self._run.abort_requested else self._run.answer

    # --- endings ---

    async def _approved(self, answer: SignatureAnswer | None) -> None:
        params = self._params
        txn = attrs.evolve(
            self._txn,
            status="APPROVED",
            status_details=StatusDetails(code="APPROVED"),
            captured=bool(params.auto_capture) and params.type != "PREAUTHORIZE",
        )
        merchant, customer = receipts(
            txn,
            self._server.config.merchant_name,
            sign_on_receipt=bool(answer and answer.on_receipt),
        )
        self._txn = attrs.evolve(txn, merchant_receipt=merchant, customer_receipt=customer)
        await self._update("APPROVED", "APPROVED", ("Approved", _money(self._txn)), False)
        await self._respond(None)

    async def _declined(self) -> None:
        code = self._rule.decline_code
        self._txn = attrs.evolve(
            self._txn, status="DECLINED", status_details=StatusDetails(code=code)
        )
        await self._update("DECLINED", "DECLINED", ("Declined", _reason(code, "DECLINED_")), False)
        await self._respond(None)

    async def _aborted(self) -> None:
        self._txn = attrs.evolve(
            self._txn,
            status="ABORTED",
            status_details=StatusDetails(code="ABORTED_MERCHANT_ABORTED"),
        )
        await self._update("ABORTED", "ABORTED", ("Aborted", _money(self._txn)), False)
        await self._respond(None)

    async def _fail(self, state: str) -> None:
        error_type = self._rule.server_error_type
        self._txn = attrs.evolve(
            self._txn, status="ERROR", status_details=StatusDetails(code=f"ERROR_{error_type}")
        )
        await self._update("FAILED", "FAILED", ("Failed", _reason(error_type, "")), False)
        await self._respond(Problem(error_type, "SERVER", f"simulated {error_type} at {state}"))

    async def _respond(self, problem: Problem | None) -> None:
        """The final response; the run is over (device free) before it is sent."""
        self._end()
        body = ExecuteTransactionResponse(transaction=self._txn)
        msg_type = MessageType.EXECUTE_TRANSACTION_RESPONSE
        if problem is None:
            await self._link.send(ok_reply(msg_type, self._echo, body))
        else:
            await self._link.send(error_reply(msg_type, self._echo, problem, body))

    def _end(self, status: str | None = None) -> None:
        if status is not None:
            self._txn = attrs.evolve(self._txn, status=status)
        self._ended = True
        self._run.abortable = False
        self._server.record(self._txn)
        self._server.release(self._run.resource, self._run)
        self._link.forget(self._run.tag)


def _new_transaction(identifier: str, request: ExecuteTransactionRequest) -> Transaction:
    params = request.transaction_parameters
    assert params is not None
    details = None
    if (
        params.application_fee is not None
        or params.included_tip_amount is not None
        or (params.metadata or params.tip_adjustable)
    ):
        details = TransactionDetails(
            application_fee=params.application_fee,
            included_tip_amount=params.included_tip_amount,
            metadata=params.metadata,
            tip_adjust_status="TIP_ADJUSTABLE" if params.tip_adjustable else None,
        )
    return Transaction(
        identifier=identifier,
        amount=params.amount,
        currency=params.currency,
        type=params.type,
        status="INITIALIZED",
        mode=request.mode or "ONLINE",
        captured=False,
        created_timestamp=0,
        details=details,
        custom_identifier=params.custom_identifier,
        subject=params.subject,
    )


def _money(txn: Transaction) -> str:
    """`10.50 EUR`, for the POS screen."""
    return f"{txn.amount or 0:.2f} {txn.currency}"


def _reason(code: str, prefix: str) -> str:
    """`DECLINED_INSUFFICIENT_FUNDS` -> `Insufficient funds`, for the POS screen."""
    text = code.removeprefix(prefix).replace("_", " ").strip().capitalize()
    return text or "Transaction declined"
