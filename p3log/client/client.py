"""A trio P3 client: what a Python POS uses to talk to a PayServer.

    async with P3Client.connect("ws://127.0.0.1:8080/") as client:
        devices = await client.login("merchant", secret)
        async with client.execute(devices[0], {"amount": 10, "currency": "EUR",
                                               "type": "CHARGE", "autoCapture": True}) as tx:
            async for event in tx:
                if isinstance(event, ExecuteTransactionAction):
                    await tx.submit_signature(on_receipt=True)
            transaction = await tx.result()

Theory of operation
-------------------
A `P3Client` owns one link and a nursery with one task, the *reader*. Every request
gets a fresh tag (uuid4) and a `_Route`: a bounded memory channel the reader
delivers that tag's messages to. The reader parses each message, finds its route by
tag, lets the route's *observer* update state synchronously (so `tx.abortable` and
`tx.open_action` always reflect the latest message that arrived, in wire order) and
then sends the message into the route's channel; the final response closes it.

A message that fits no open request (unknown tag, a tag already answered, a type
the request cannot get, bytes that do not parse) never crashes the reader: it is
kept as a `Violation` in `client.violations`. When such a message is the response a
request was waiting for, that request fails with `ProtocolViolation`.

Channels are bounded, so a transaction whose events nobody reads pauses the reader
(backpressure) once its buffer is full. The methods that wait for an answer
(`abort`, `submit_signature`, `result`) keep draining their transaction's events
into a backlog meanwhile, so waiting never deadlocks; the iterator yields the
backlog first.

Timeouts are trio cancel scopes. `timeout` bounds each request the server answers
promptly (connect, login, abort, submit signature); `operation_timeout` bounds
waiting for the end of an execute or amend (default: no limit, shoppers are slow).
A timeout raises `RequestTimeout` and leaves the client usable: the request's route
stays open but detached, so a late answer is absorbed instead of being reported as
a violation.

When the link ends, every waiting request raises `ConnectionLost`, and so does every
later call.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any, NoReturn, TypeAlias, TypeVar

import outcome
import trio
import trio_websocket

from p3log.client.errors import (
    ConnectFailed,
    ConnectionLost,
    P3ClientError,
    ProtocolViolation,
    RequestRefused,
    RequestTimeout,
    error_for_response,
)
from p3log.client.routing import Deliver, OpenRequest, Router, Violation
from p3log.net.channel import Channel, ChannelClosed, open_channel
from p3log.net.failures import describe_connect_failure
from p3log.protocol.convert import FieldTypeError, converter_for
from p3log.protocol.correlation import quoted_tag
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.model import (
    AbortTransactionRequest,
    AccountParameters,
    AmendParameters,
    AmendTransactionRequest,
    AmendTransactionResponse,
    AmendTransactionUpdate,
    Body,
    Device,
    ExecuteTransactionAction,
    ExecuteTransactionRequest,
    ExecuteTransactionResponse,
    ExecuteTransactionUpdate,
    LoginMerchantRequest,
    LoginMerchantResponse,
    Message,
    MessageType,
    ProcessParameters,
    SubmitSignatureRequest,
    Transaction,
    TransactionParameters,
)
from p3log.protocol.parse import parse, serialize

__all__ = ["P3Client", "TransactionEvent", "TransactionHandle", "Violation"]

T = TypeVar("T")

#: What iterating a `TransactionHandle` yields: the typed bodies of the execute's
#: updates and actions (the final response ends the iteration; see `result()`).
TransactionEvent: TypeAlias = ExecuteTransactionUpdate | ExecuteTransactionAction

DEFAULT_TIMEOUT = 10.0
DEFAULT_EVENT_BUFFER = 64


class _Omit(enum.Enum):
    KEY = enum.auto()


class _Route:
    """One request in flight: where the reader delivers the messages of its tag."""

    def __init__(
        self, request: OpenRequest, buffer: int, observe: Callable[[Message], None] | None
    ) -> None:
        self.tag = request.tag
        self.response_type = request.response_type
        self.observe = observe
        self.send, self.receive = trio.open_memory_channel[Message](buffer)
        self.finished = False
        self.ended = trio.Event()
        self.failure: Callable[[], P3ClientError] | None = None

    def finish(self, failure: Callable[[], P3ClientError] | None = None) -> None:
        """No more messages will come for this tag; `failure` says why, if it is not a response."""
        if not self.finished:
            self.finished = True
            self.failure = failure
            self.send.close()
            self.ended.set()

    def detach(self) -> None:
        """Nobody waits any more: the reader keeps routing the tag, but drops its messages."""
        self.receive.close()

    async def next_message(self) -> Message | None:
        """The next message of the tag, None once the tag is over; raises the failure, if any.

        On a detached route there are no messages to read: it waits for the end.
        """
        try:
            return await self.receive.receive()
        except trio.EndOfChannel:
            pass
        except trio.ClosedResourceError:
            await self.ended.wait()
        if self.failure is not None:
            raise self.failure()
        return None

    async def response(self) -> Message:
        """Skip to the final response (for requests that get nothing else)."""
        while (message := await self.next_message()) is not None:
            if message.type == self.response_type:
                return message
        raise ProtocolViolation(f"the request with tag {self.tag} ended without a response")


class P3Client:
    """One P3 session with a PayServer; see the module documentation.

    Make one with `P3Client.connect(url)` (which dials) or `P3Client.over(channel)`
    (for a link someone else opened); both are async context managers that run the
    reader and stop it on exit.
    """

    def __init__(
        self,
        channel: Channel,
        *,
        dialect: Dialect = DEFAULT_DIALECT,
        timeout: float = DEFAULT_TIMEOUT,
        operation_timeout: float = math.inf,
        event_buffer: int = DEFAULT_EVENT_BUFFER,
    ) -> None:
        self.channel = channel
        self.dialect = dialect
        self.timeout = timeout
        self.operation_timeout = operation_timeout
        self.event_buffer = event_buffer
        self.devices: list[Device] = []
        self.information: dict[str, Any] = {}
        self.violations: list[Violation] = []
        self._converter = converter_for(dialect)
        self._router = Router(dialect)  # the protocol decisions: which tag, which rule
        self._routes: dict[str, _Route] = {}  # the open tags' channels
        self._running: dict[str, TransactionHandle] = {}
        self._closed: str | None = None

    # --- lifetime ---------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        dialect: Dialect = DEFAULT_DIALECT,
        timeout: float = DEFAULT_TIMEOUT,
        operation_timeout: float = math.inf,
        wrap_channel: Callable[[Channel], Channel] | None = None,
        event_buffer: int = DEFAULT_EVENT_BUFFER,
    ) -> AsyncIterator[P3Client]:
        """Dial `ws://…`, `wss://…` or `tcp://HOST:PORT` and run a client on the link.

        `timeout` also bounds the dial. `wrap_channel` wraps the opened channel
        before the client uses it, e.g. `lambda ch: RecordingChannel(ch, log, sid,
        "client")` to record the session. Raises `ConnectFailed`.
        """
        async with AsyncExitStack() as stack:
            try:
                channel = await stack.enter_async_context(
                    open_channel(url, dialect, connect_timeout=timeout)
                )
            except (OSError, trio.TooSlowError, trio_websocket.HandshakeError) as exc:
                reason = describe_connect_failure(exc)
                raise ConnectFailed(f"cannot connect to {url}: {reason}") from exc
            if wrap_channel is not None:
                channel = wrap_channel(channel)
            stack.push_async_callback(channel.aclose)
            async with cls.over(
                channel,
                dialect=dialect,
                timeout=timeout,
                operation_timeout=operation_timeout,
                event_buffer=event_buffer,
            ) as client:
                yield client

    @classmethod
    @asynccontextmanager
    async def over(
        cls,
        channel: Channel,
        *,
        dialect: Dialect = DEFAULT_DIALECT,
        timeout: float = DEFAULT_TIMEOUT,
        operation_timeout: float = math.inf,
        event_buffer: int = DEFAULT_EVENT_BUFFER,
    ) -> AsyncIterator[P3Client]:
        """Run a client on an open channel (the caller closes the channel)."""
        client = cls(
            channel,
            dialect=dialect,
            timeout=timeout,
            operation_timeout=operation_timeout,
            event_buffer=event_buffer,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._read_loop)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The body's own exception, not wrapped in the nursery's group.
            if len(group.exceptions) == 1:
                _reraise(group.exceptions[0])
            raise
        finally:
            client._close("the client is closed")

    @property
    def closed(self) -> bool:
        """True once the link has ended; every request then raises `ConnectionLost`."""
        return self._closed is not None

    # --- requests ---------------------------------------------------------------

    async def login(
        self,
        merchant_identifier: str,
        merchant_secret: str,
        provider_mode: str = "MOCK",
        *,
        timeout: float | None = None,
    ) -> list[Device]:
        """Log in; returns (and keeps in `devices`) the readers the server offers.

        Raises `AuthenticationFailed` (or another `P3ErrorResponse`) on an error status.
        """
        body = LoginMerchantRequest(
            provider_mode=provider_mode,
            merchant_identifier=merchant_identifier,
            merchant_secret=merchant_secret,
        )
        route = await self._send_request(MessageType.LOGIN_MERCHANT_REQUEST, body)
        response = await self._wait_response(route, timeout, "login response")
        self._raise_for_status(response)
        if not isinstance(response.body, LoginMerchantResponse):
            raise ProtocolViolation(f"the login response (tag {route.tag}) has no body")
        self.devices = list(response.body.devices or [])
        self.information = dict(response.body.information or {})
        return self.devices

    @asynccontextmanager
    async def execute(
        self,
        resource: str | Device,
        params: TransactionParameters | Mapping[str, Any],
        *,
        mode: str | None = None,
        session_identifier: str | None = None,
        account_parameters: AccountParameters | None = None,
        process_parameters: ProcessParameters | None = None,
    ) -> AsyncIterator[TransactionHandle]:
        """Start a transaction on a reader; yields its `TransactionHandle`.

        `params` is a `TransactionParameters` or its wire form (`{"amount": 10,
        "currency": "EUR", "type": "CHARGE", "autoCapture": True}`). Leaving the block
        normally waits for the final execute response (there always is one) or the
        end of the link, without raising; leaving it with an exception does not wait,
        and the transaction's later messages are absorbed. Raises `RequestRefused`
        while another execute of this client runs on the resource.
        """
        path = resource.resource if isinstance(resource, Device) else resource
        if not path:
            raise ValueError("execute needs a device resource (log in first)")
        other = self._running.get(path)
        if other is not None and not other.done:
            raise RequestRefused(
                f"the transaction with tag {other.tag} is still running on {path}; "
                "wait for its final response first"
            )
        request = ExecuteTransactionRequest(
            mode=mode,
            transaction_parameters=self._structure(params, TransactionParameters),
            session_identifier=session_identifier,
            account_parameters=account_parameters,
            process_parameters=process_parameters,
        )
        handle = TransactionHandle(self, path, request)
        self._running[path] = handle
        try:
            await self._send_request(
                MessageType.EXECUTE_TRANSACTION_REQUEST,
                request,
                resource=path,
                observe=handle._observe,
                on_route=handle._bind,
            )
        except BaseException:
            self._transaction_over(handle)
            raise
        route = handle._route
        assert route is not None
        try:
            yield handle
        except BaseException:
            route.detach()
            raise
        await handle._wait_done()

    async def amend(
        self,
        params: AmendParameters | Mapping[str, Any],
        *,
        mode: str | None = None,
        on_update: Callable[[AmendTransactionUpdate], object] | None = None,
        timeout: float | None = None,
    ) -> Transaction:
        """Refund, capture or tip-adjust a transaction; returns the resulting transaction.

        `params` is an `AmendParameters` or its wire form (`{"type": "REFUND",
        "referencedTransactionIdentifier": ...}`). The request goes with
        `resource: null`; its updates go to `on_update` as they arrive. `timeout`
        defaults to the client's `operation_timeout`.
        """
        request = AmendTransactionRequest(
            mode=mode, transaction_parameters=self._structure(params, AmendParameters)
        )
        route = await self._send_request(
            MessageType.AMEND_TRANSACTION_REQUEST,
            request,
            resource=None,
        )
        limit = self.operation_timeout if timeout is None else timeout
        try:
            with _deadline(limit, "amend response"):
                while (message := await route.next_message()) is not None:
                    if isinstance(message.body, AmendTransactionUpdate) and on_update:
                        on_update(message.body)
                    if message.type == route.response_type:
                        break
                else:
                    raise ProtocolViolation(f"the amend (tag {route.tag}) ended without response")
        finally:
            if not route.finished:
                route.detach()
        self._raise_for_status(message)
        if not isinstance(message.body, AmendTransactionResponse) or not message.body.transaction:
            raise ProtocolViolation(f"the amend response (tag {route.tag}) has no transaction")
        return message.body.transaction

    # --- plumbing ---------------------------------------------------------------

    async def _send_request(
        self,
        msg_type: str,
        body: Body,
        *,
        resource: str | _Omit | None = _Omit.KEY,
        observe: Callable[[Message], None] | None = None,
        on_route: Callable[[_Route], None] | None = None,
    ) -> _Route:
        """Send a request under a fresh tag and open its route (before sending); what
        answers it is the router's to know.

        `resource` is left out by default; `None` sends `null`.
        """
        if self._closed is not None:
            raise ConnectionLost(self._closed)
        tag = str(uuid.uuid4())
        if resource is _Omit.KEY:
            message = Message(type=msg_type, tag=tag, body=body)
        elif resource is None:
            message = Message(type=msg_type, tag=tag, body=body, null_keys=frozenset({"resource"}))
        else:
            message = Message(type=msg_type, tag=tag, resource=resource, body=body)
        data = serialize(message, self.dialect)
        route = _Route(self._router.open(tag, msg_type), self.event_buffer, observe)
        if on_route is not None:
            on_route(route)
        self._routes[tag] = route
        try:
            await self.channel.send(data)
        except ChannelClosed as exc:
            self._routes.pop(tag, None)
            self._router.forget(tag)
            raise ConnectionLost(f"the connection closed while sending {msg_type}: {exc}") from exc
        except BaseException:
            # Cancelled while sending: the request may or may not have gone out.
            route.detach()
            raise
        return route

    async def _wait_response(self, route: _Route, timeout: float | None, what: str) -> Message:
        """The response of a prompt request, within `timeout` (None: the client's)."""
        try:
            with _deadline(self.timeout if timeout is None else timeout, what):
                return await route.response()
        finally:
            if not route.finished:
                route.detach()

    def _raise_for_status(self, message: Message) -> None:
        if message.is_error:
            raise error_for_response(message, self.dialect)

    def _structure(self, value: T | Mapping[str, Any], cls: type[T]) -> T:
        if isinstance(value, cls):
            return value
        try:
            return self._converter.structure(dict(value), cls)  # type: ignore[arg-type]
        except FieldTypeError as exc:
            raise ValueError(f"{cls.__name__}: {exc}") from None

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    data = await self.channel.receive()
                except ChannelClosed as exc:
                    self._close(f"the connection closed: {exc}")
                    return
                await self._dispatch(data)
        finally:
            self._close("the client is closed")

    async def _dispatch(self, data: bytes) -> None:
        """Carry out the router's plan for one message."""
        plan = self._router.route(parse(data, self.dialect), data)
        if isinstance(plan, Deliver):
            route = self._routes.get(plan.tag)
            if route is None:  # the router and the channels open and end tags together
                return
            if route.observe is not None:
                route.observe(plan.message)
            # A detached route (nobody waits for the tag any more) refuses the message.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await route.send.send(plan.message)
            if plan.final:
                self._end_route(plan.tag)
            return
        self.violations.append(plan.violation)
        error, failure = plan.error, plan.failure
        if plan.ends is None:
            return
        if error is not None:
            self._end_route(plan.ends, lambda: error_for_response(error, self.dialect))
        else:
            self._end_route(plan.ends, lambda: ProtocolViolation(failure))

    def _end_route(self, tag: str, failure: Callable[[], P3ClientError] | None = None) -> None:
        route = self._routes.pop(tag, None)
        if route is not None:
            route.finish(failure)

    def _close(self, reason: str) -> None:
        """The link is over: fail every open request with `ConnectionLost`."""
        if self._closed is None:
            self._closed = reason
        routes, self._routes = self._routes, {}
        self._router.close()
        for route in routes.values():
            route.finish(lambda: ConnectionLost(reason))
        self._running.clear()

    def _transaction_over(self, handle: TransactionHandle) -> None:
        if self._running.get(handle.resource) is handle:
            del self._running[handle.resource]


class TransactionHandle:
    """One running execute: iterate it for its events, answer actions, abort, get the result.

    Iterating yields the typed bodies of the updates and actions as they arrive
    (`ExecuteTransactionUpdate`, `ExecuteTransactionAction`) and stops at the final
    response. State attributes follow every message as it arrives:

    - `latest_update`: the newest update; `open_action`: the action waiting for an
      answer (None once a signature or an abort was accepted, or the transaction ended);
    - `abortable`: the latest update said `abortable: true`, or an action is open;
    - `transaction`: the newest transaction object any message carried;
    - `response`: the final execute response, once it arrived.
    """

    def __init__(self, client: P3Client, resource: str, request: ExecuteTransactionRequest) -> None:
        self._client = client
        self.resource = resource
        self.request = request
        self.tag = ""
        self.latest_update: ExecuteTransactionUpdate | None = None
        self.open_action: ExecuteTransactionAction | None = None
        self.transaction: Transaction | None = None
        self.response: Message | None = None
        self.update_count = 0
        self.action_count = 0
        self.abort_requested = False
        self._backlog: deque[TransactionEvent] = deque()
        self._route: _Route | None = None

    def _bind(self, route: _Route) -> None:
        self._route = route
        self.tag = route.tag

    @property
    def done(self) -> bool:
        """The final execute response arrived (or the link ended)."""
        return self.response is not None or (self._route is not None and self._route.finished)

    @property
    def abortable(self) -> bool:
        if self.done:
            return False
        if self.open_action is not None:
            return True
        return self.latest_update is not None and self.latest_update.abortable is True

    # --- events -----------------------------------------------------------------

    def __aiter__(self) -> TransactionHandle:
        return self

    async def __anext__(self) -> TransactionEvent:
        if self._backlog:
            return self._backlog.popleft()
        event = await self._next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def _next_event(self) -> TransactionEvent | None:
        """The next update or action from the route; None after the final response."""
        route = self._route
        assert route is not None
        while (message := await route.next_message()) is not None:
            body = message.body
            if isinstance(body, ExecuteTransactionUpdate | ExecuteTransactionAction):
                return body
        return None

    async def _drain(self) -> None:
        """Move events into the backlog until the route ends (never raises its failure)."""
        try:
            while (event := await self._next_event()) is not None:
                self._backlog.append(event)
        except P3ClientError:
            pass

    async def _while_draining(self, wait: Callable[[], Awaitable[T]]) -> T:
        """`await wait()` while the transaction's events keep moving into the backlog."""
        box: list[outcome.Outcome[T]] = []
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                box.append(await outcome.acapture(wait))
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            await self._drain()
            await trio.sleep_forever()
        return box[0].unwrap()

    # --- reader side ------------------------------------------------------------

    def _observe(self, message: Message) -> None:
        """Called by the reader for every message of this execute, in arrival order."""
        body = message.body
        if isinstance(body, ExecuteTransactionUpdate):
            self.latest_update = body
            self.update_count += 1
        elif isinstance(body, ExecuteTransactionAction):
            self.open_action = body
            self.action_count += 1
        if message.type == MessageType.EXECUTE_TRANSACTION_RESPONSE:
            self.response = message
            self.open_action = None
            self._client._transaction_over(self)
        transaction = getattr(body, "transaction", None)
        if isinstance(transaction, Transaction):
            self.transaction = transaction

    def _observe_answer(self, message: Message) -> None:
        """An accepted signature or abort answers the open action."""
        if not message.is_error:
            self.open_action = None

    # --- requests ---------------------------------------------------------------

    async def abort(self, *, force: bool = False, timeout: float | None = None) -> Message:
        """Ask the server to abort; returns the abort response.

        Refused locally (`RequestRefused`, nothing sent) unless `abortable` or
        `force`. Raises `NotAbortable` when the server refuses. Either way the
        execute goes on to its final response: call `result()` for it.
        """
        if not force and not self.abortable:
            raise RequestRefused(
                f"the transaction with tag {self.tag} is not abortable: {self._why_not()}"
            )
        rules = self._client.dialect.abort
        body = AbortTransactionRequest(transaction_tag=quoted_tag(rules, self.tag))
        route = await self._client._send_request(
            rules.request_type,
            body,
            resource=self.resource,
            observe=self._observe_answer,
        )
        self.abort_requested = True
        response = await self._while_draining(
            lambda: self._client._wait_response(route, timeout, "abort response")
        )
        self._client._raise_for_status(response)
        return response

    async def submit_signature(
        self,
        png: bytes | None = None,
        *,
        on_receipt: bool = False,
        force: bool = False,
        timeout: float | None = None,
    ) -> Message:
        """Answer the signature action with a PNG (sent base64) or "signs on the receipt".

        Refused locally (`RequestRefused`) when no action is open, unless `force`.
        An error response raises (`P3ErrorResponse`) and leaves the action open:
        submit again, or abort.
        """
        if (png is None) == (not on_receipt):
            raise ValueError("give either png=<bytes> or on_receipt=True")
        if not force and self.open_action is None:
            raise RequestRefused(f"no action is open on the transaction with tag {self.tag}")
        body = (
            SubmitSignatureRequest(signature=base64.b64encode(png).decode("ascii"))
            if png is not None
            else SubmitSignatureRequest(sign_on_receipt=True)
        )
        route = await self._client._send_request(
            MessageType.SUBMIT_SIGNATURE_REQUEST,
            body,
            resource=self.resource,
            observe=self._observe_answer,
        )
        response = await self._while_draining(
            lambda: self._client._wait_response(route, timeout, "submit signature response")
        )
        self._client._raise_for_status(response)
        return response

    async def result(self, *, timeout: float | None = None) -> Transaction:
        """Wait for the final execute response; returns the transaction it carries.

        Raises a `P3ErrorResponse` for an error status (its `transaction` holds the
        one the response carried, if any), `ConnectionLost` if the link ended first,
        `RequestTimeout` after `timeout` (default: the client's `operation_timeout`;
        the transaction goes on and `result()` may be called again).
        """
        limit = self._client.operation_timeout if timeout is None else timeout
        with _deadline(limit, "final execute response"):
            await self._drain()
        response = self.response
        if response is None:
            route = self._route
            if route is not None and route.failure is not None:
                raise route.failure()
            raise ConnectionLost(f"the transaction with tag {self.tag} ended without a response")
        self._client._raise_for_status(response)
        body = response.body
        if not isinstance(body, ExecuteTransactionResponse) or body.transaction is None:
            raise ProtocolViolation(f"the execute response (tag {self.tag}) has no transaction")
        return body.transaction

    async def _wait_done(self) -> None:
        """Until the final response or the end of the link (leaving `execute` normally).

        Raises nothing of its own: outcomes are `result()`'s to report.
        """
        if not self.done:
            with _deadline(self._client.operation_timeout, "final execute response"):
                await self._drain()

    def _why_not(self) -> str:
        if self.done:
            return "it is over"
        if self.latest_update is None:
            return "no update said it was abortable yet"
        state = self.latest_update.state_details or self.latest_update.state or "?"
        return f"the latest update ({state}) said abortable: {self.latest_update.abortable}"


@contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """A `trio.fail_after` that raises `RequestTimeout` naming what did not come."""
    if math.isinf(seconds):
        yield
        return
    try:
        with trio.fail_after(seconds):
            yield
    except RequestTimeout:
        raise
    except trio.TooSlowError:
        raise RequestTimeout(f"no {what} within {seconds:g} s") from None


def _reraise(exc: BaseException) -> NoReturn:
    """Raise `exc` again without making the group it came in its `__context__`."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context
