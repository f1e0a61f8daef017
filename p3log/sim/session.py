"""One POS connection to the simulated PayServer.

The session reads messages one at a time and answers each at once, except execute
and amend, which it validates and then runs as tasks in its own nursery, so that it
keeps reading (abort, signature) while their updates flow. When the connection
ends, the nursery is cancelled: every operation of the session stops, its device is
freed and its transaction is recorded as INCONCLUSIVE.

What the session answers to what cannot be served (docs/sim.md has the table):

- bytes that are not a P3 message: `ERROR_RESPONSE`, PARAMETER_INVALID (or
  PARAMETER_MISSING when there is no `type`), echoing the tag when the bytes were a
  JSON object with a string `tag`; a known request with a value of the wrong JSON
  type gets its own response type instead;
- a type that is not a request: `ERROR_RESPONSE`; an unknown `X_REQUEST`:
  `X_RESPONSE`; both PARAMETER_INVALID;
- any request but login before a successful login: SERVER_AUTHENTICATION_FAILED;
- a request without a tag, or with the tag of an operation still running:
  PARAMETER_MISSING / PARAMETER_INVALID.

The session stays open after every one of these.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from itertools import count

import trio

from p3log.net.channel import Channel, ChannelClosed
from p3log.net.close_codes import INTERNAL_ERROR
from p3log.protocol.model import (
    AbortTransactionRequest,
    AmendTransactionRequest,
    ExecuteTransactionRequest,
    LoginMerchantResponse,
    Message,
    MessageType,
)
from p3log.protocol.parse import Malformed, MalformedReason, parse, serialize
from p3log.sim.amend import AmendFlow, plan_amend
from p3log.sim.checks import check_amend, check_execute, check_login, check_signature
from p3log.sim.execute import ExecuteFlow
from p3log.sim.payserver import PayServer
from p3log.sim.replies import (
    GENERIC_ERROR_TYPE,
    Echo,
    Problem,
    error_reply,
    ok_reply,
    response_type,
)
from p3log.sim.running import ExecuteRun

__all__ = ["Session"]

log = logging.getLogger(__name__)
_DROP_TIMEOUT = 2.0
_session_ids = count(1)


class Session:
    def __init__(self, channel: Channel, server: PayServer) -> None:
        self._channel = channel
        self._server = server
        self._dialect = server.config.dialect
        self._id = next(_session_ids)
        self._logged_in = False
        self._executes: dict[str, ExecuteRun] = {}  # resource -> execute in flight
        self._open_tags: set[str] = set()  # tags of every operation in flight
        self._send_lock = trio.Lock()
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._handlers: dict[str, Callable[[Message], Awaitable[None]]] = {
            MessageType.LOGIN_MERCHANT_REQUEST: self._login,
            MessageType.EXECUTE_TRANSACTION_REQUEST: self._execute,
            self._dialect.abort.request_type: self._abort,
            MessageType.SUBMIT_SIGNATURE_REQUEST: self._submit_signature,
            MessageType.AMEND_TRANSACTION_REQUEST: self._amend,
        }

    async def run(self) -> None:
        """Serve the connection until it closes (or a simulated fault drops it)."""
        log.debug("session %d: opened", self._id)
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    while True:
                        try:
                            data = await self._channel.receive()
                        except ChannelClosed:
                            break
                        await self._handle(data)
                finally:
                    nursery.cancel_scope.cancel()
        log.debug("session %d: closed", self._id)

    # --- the Link the operations use ---

    async def send(self, message: Message) -> None:
        data = serialize(message, self._dialect)
        async with self._send_lock:
            try:
                await self._channel.send(data)
            except ChannelClosed:
                self._end_session()

    async def drop(self) -> None:
        log.debug("session %d: dropping the connection (scenario)", self._id)
        with trio.move_on_after(_DROP_TIMEOUT):
            await self._channel.aclose(INTERNAL_ERROR, "simulated connection drop")
        self._end_session()

    def forget(self, tag: str) -> None:
        self._open_tags.discard(tag)
        for resource, run in list(self._executes.items()):
            if run.tag == tag:
                del self._executes[resource]

    def _end_session(self) -> None:
        # Cancels the reader and every operation; the caller unwinds at its next checkpoint.
        self._scope.cancel()

    # --- dispatch ---

    async def _handle(self, data: bytes) -> None:
        parsed = parse(data, self._dialect)
        if isinstance(parsed, Malformed):
            await self._malformed(parsed)
            return
        handler = self._handlers.get(parsed.type)
        echo = Echo.of(parsed)
        answer_type = response_type(parsed.type, self._dialect)
        if handler is None:
            what = "not a request" if answer_type == GENERIC_ERROR_TYPE else "not a known request"
            problem = Problem.invalid(f"{parsed.type} is {what}")
        elif parsed.tag is None:
            problem = Problem.missing("tag")
        elif not self._logged_in and parsed.type != MessageType.LOGIN_MERCHANT_REQUEST:
            problem = Problem(
                "SERVER_AUTHENTICATION_FAILED", "SERVER", "log in first (LOGIN_MERCHANT_REQUEST)"
            )
        elif parsed.tag in self._open_tags:
            problem = Problem.invalid(f"tag {parsed.tag!r} belongs to an operation still running")
        else:
            await handler(parsed)
            return
        await self.send(error_reply(answer_type, echo, problem))

    async def _malformed(self, malformed: Malformed) -> None:
        obj = malformed.obj
        msg_type = obj.get("type") if obj is not None else None
        if malformed.reason == MalformedReason.BAD_FIELD and isinstance(msg_type, str):
            answer_type = response_type(msg_type, self._dialect)
        else:
            answer_type = GENERIC_ERROR_TYPE
        if malformed.reason == MalformedReason.NO_TYPE and obj is not None and "type" not in obj:
            problem = Problem.missing("type")
        else:
            problem = Problem.invalid(str(malformed))
        await self.send(error_reply(answer_type, Echo.of_object(obj), problem))

    async def _refuse(self, request: Message, problem: Problem) -> None:
        answer_type = response_type(request.type, self._dialect)
        await self.send(error_reply(answer_type, Echo.of(request), problem))

    # --- login ---

    async def _login(self, request: Message) -> None:
        devices = self._server.config.devices
        problem = check_login(request.body, devices)
        self._logged_in = problem is None
        if problem is not None:
            await self._refuse(request, problem)
            return
        body = LoginMerchantResponse(
            information=dict(devices.information),
            devices=[device.to_wire() for device in devices.devices],
        )
        await self.send(ok_reply(MessageType.LOGIN_MERCHANT_RESPONSE, Echo.of(request), body))

    # --- execute ---

    async def _execute(self, request: Message) -> None:
        problem = self._execute_problem(request)
        if problem is not None:
            await self._refuse(request, problem)
            return
        assert request.tag is not None and request.resource is not None
        assert isinstance(request.body, ExecuteTransactionRequest)
        assert request.body.transaction_parameters is not None
        run = ExecuteRun(tag=request.tag, resource=request.resource)
        self._server.claim(run.resource, run)
        self._executes[run.resource] = run
        self._open_tags.add(run.tag)
        rule = self._server.next_rule(request.body.transaction_parameters.amount)
        rng = self._server.operation_rng()
        flow = ExecuteFlow(run, request, rule, rng, self._server, self)
        assert self._nursery is not None
        self._nursery.start_soon(flow.run)

    def _execute_problem(self, request: Message) -> Problem | None:
        resource = request.resource
        if not resource:
            return Problem.missing("resource")
        if self._server.device(resource) is None:
            return Problem("ACCESSORY_NOT_FOUND", "ACCESSORY", f"no device at {resource}")
        problem = check_execute(request.body)
        if problem is not None:
            return problem
        if resource in self._executes:
            return Problem(
                "TRANSACTION_BUSY",
                "TRANSACTION",
                f"a transaction is still running on {resource} in this session",
            )
        if self._server.holder(resource) is not None:
            return Problem(
                "ACCESSORY_BUSY", "ACCESSORY", f"{resource} is busy with another session"
            )
        return None

    # --- abort ---

    async def _abort(self, request: Message) -> None:
        found = self._run_to_abort(request)
        if isinstance(found, Problem):
            await self._refuse(request, found)
            return
        found.request_abort()
        answer = ok_reply(self._dialect.abort.response_type, Echo.of(request))
        await self.send(answer)
        found.wake.set()

    def _run_to_abort(self, request: Message) -> ExecuteRun | Problem:
        not_abortable = self._dialect.abort.not_abortable_error
        if self._dialect.abort.correlation == "body_tag":
            body = request.body
            tag = body.transaction_tag if isinstance(body, AbortTransactionRequest) else None
            if not tag:
                return Problem.missing(self._dialect.abort.tag_key)
            run = next((run for run in self._executes.values() if run.tag == tag), None)
            where = f"with tag {tag!r}"
        else:
            if not request.resource:
                return Problem.missing("resource")
            run = self._executes.get(request.resource)
            where = f"on {request.resource}"
        if run is None:
            return Problem(
                not_abortable, "TRANSACTION", f"no transaction is running {where} in this session"
            )
        if not run.can_abort:
            return Problem(
                not_abortable, "TRANSACTION", f"the transaction {where} is not abortable now"
            )
        return run

    # --- signature ---

    async def _submit_signature(self, request: Message) -> None:
        waiting = [run for run in self._executes.values() if run.action_open]
        if request.resource:
            waiting = [run for run in waiting if run.resource == request.resource]
        if len(waiting) != 1:
            where = f" on {request.resource}" if request.resource else ""
            detail = "no action is waiting" if not waiting else "name the resource: several wait"
            await self._refuse(
                request, Problem("TRANSACTION_ACTION_ERROR", "TRANSACTION", f"{detail}{where}")
            )
            return
        (run,) = waiting
        answer = check_signature(request.body, self._dialect)
        if isinstance(answer, Problem):
            await self._refuse(request, answer)  # the action stays open
            return
        run.answer_action(answer)
        await self.send(ok_reply(MessageType.SUBMIT_SIGNATURE_RESPONSE, Echo.of(request)))
        run.wake.set()

    # --- amend ---

    async def _amend(self, request: Message) -> None:
        problem = check_amend(request.body)
        if problem is not None:
            await self._refuse(request, problem)
            return
        assert isinstance(request.body, AmendTransactionRequest)
        params = request.body.transaction_parameters
        assert params is not None and params.referenced_transaction_identifier is not None
        reference = params.referenced_transaction_identifier
        original = self._server.lookup(reference)
        if original is None:
            problem = Problem(
                "TRANSACTION_REFERENCE_NOT_FOUND", "TRANSACTION", f"no transaction {reference}"
            )
            await self._refuse(request, problem)
            return
        identifier = self._server.new_identifier(self._server.operation_rng())
        merchant = self._server.config.merchant_name
        refunded = self._server.refunded(reference)
        now_ms = time.time_ns() // 1_000_000
        plan = plan_amend(params, original, refunded, identifier, merchant, now_ms)
        if isinstance(plan, Problem):
            await self._refuse(request, plan)
            return
        self._server.record(plan.original)
        self._server.record(plan.result)
        self._server.add_refund(reference, plan.refund)
        assert request.tag is not None and self._nursery is not None
        self._open_tags.add(request.tag)
        self._nursery.start_soon(AmendFlow(request, plan, self._server, self).run)
