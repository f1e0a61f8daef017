"""The P3 lifecycle as a fold: events in, in seq order; projection rows out.

Rules this module keeps (after h11's `_state.py`):

- What a message means for a transaction's rows lives here; what kind of message
  it is (`p3log.protocol.kinds`), which execute an abort or a signature is about
  (`p3log.protocol.correlation`) and the rules' names (`p3log.protocol.rules`) are
  the protocol package's, shared with the diff and the client. It does no I/O and
  reads no clock: times are the events' recorded times, so a rebuild gives the same
  rows today as the day they were recorded.
- State is per session (one POS connection): tags, the execute in flight on each
  resource and open actions never cross connections. `connection_closed` ends a
  session: open requests become `missing_response` and the state is dropped, so
  the rows of a session depend only on its events since its last close (which is
  what lets `store.py` resume a fold part-way through).
- What the state cannot take is a finding, named after the rule of docs/protocol.md §7
  it breaks; the message is still applied as far as it makes sense.

Theory of operation. A client `*_REQUEST` opens its tag; the server's `*_RESPONSE`
with that tag closes it, and `*_UPDATE`/`*_ACTION` may only come while it is open:

    server message   tag unknown    tag open     tag answered
    *_RESPONSE       unknown_tag    close        duplicate_response
    *_UPDATE/ACTION  unknown_tag    apply        message_after_response

An execute or amend request starts a transaction. The dialect says which execute an
abort aborts (the one in flight on its session and resource, or the one its body
names); a signature answers the open action of the execute on its resource (the
rule of `InFlight.acted_on`).

Rows change while their transaction lives (a state's time ends with the next
update; a window closes), so `take_changes()` hands out the current version of
every row touched since the last call; the store replaces rows by their key.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import attrs

from p3log.projections.observed import Observed, amount
from p3log.projections.rows import (
    TABLE_BY_ROW,
    AbortRow,
    AbortWindowRow,
    ActionWaitRow,
    FindingRow,
    LatencyRow,
    Micros,
    Table,
    TransactionEventRow,
    TransactionRow,
    TransactionStateRow,
)
from p3log.protocol.correlation import InFlight
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.kinds import ACTIONS, EXECUTE, OPERATIONS, SIGNATURE, UPDATES, Kind, Kinds, Step
from p3log.protocol.model import status_is_error
from p3log.protocol.rules import FINDINGS, Rule
from p3log.store.lifecycle import ConnectionClosed

# Findings (docs/protocol.md §7), by the name each row carries in `rule`.
RULES = FINDINGS

INCOMPLETE = "INCOMPLETE"
ERROR = "ERROR"
UNKNOWN = "UNKNOWN"  # a response that is OK but names no transaction status


def _ms(start_us: int, end_us: int | None) -> float | None:
    return None if end_us is None else (end_us - start_us) / 1000


def _at(event: Observed | None) -> Micros | None:
    return Micros(event.at_us) if event else None


def _seq(event: Observed | None) -> int | None:
    return event.seq if event else None


def _between(start: Observed, end: Observed | None) -> float | None:
    """Milliseconds from `start` to `end`, None while there is no end."""
    return _ms(start.at_us, end.at_us) if end else None


class _Row:
    """Mutable state behind one row; `row()` is its current immutable version."""

    __slots__ = ()

    def row(self) -> Any:
        raise NotImplementedError


# The state behind each row is an attrs class: its fields, declared once, make its
# slots (the fold keeps many alive) and its constructor. eq=False: compared and
# hashed by identity, as the fold tracks each one by `id`.
@attrs.define(eq=False)
class _Transaction(_Row):
    key: str
    request: Observed
    operation: str
    response: Observed | None = None
    outcome: str = INCOMPLETE
    identifier: str | None = None
    amount: Decimal | None = attrs.field(
        default=attrs.Factory(lambda self: amount(self.request.req_amount), takes_self=True)
    )
    currency: str | None = attrs.field(
        default=attrs.Factory(lambda self: self.request.req_currency, takes_self=True)
    )
    transaction_type: str | None = attrs.field(
        default=attrs.Factory(lambda self: self.request.req_type, takes_self=True)
    )
    status_details_code: str | None = None
    error_type: str | None = None
    abort_requested: bool = False
    update_count: int = 0
    action_count: int = 0
    latest_state: _State | None = None
    window: _Window | None = None  # open while the latest update said abortable
    action: _Action | None = None  # the action waiting for the POS
    waited_us: int = 0  # time the server spent waiting for answers to actions

    @property
    def session_id(self) -> str:
        return self.request.session_id

    @property
    def tag(self) -> str | None:
        return self.request.tag

    @property
    def resource(self) -> str | None:
        return self.request.resource

    @property
    def action_waits(self) -> bool:
        return self.action is not None

    @property
    def updated(self) -> bool:
        return self.latest_state is not None

    @property
    def abortable(self) -> bool:
        """May the POS abort now? While the latest update said so, or an action waits."""
        return self.window is not None or self.action is not None

    def learn(self, event: Observed) -> None:
        """Take what the server's transaction object in `event` says."""
        self.identifier = event.tx_identifier or self.identifier
        if self.amount is None:
            self.amount = amount(event.tx_amount)
        self.currency = self.currency or event.tx_currency
        self.transaction_type = self.transaction_type or event.tx_type
        self.status_details_code = event.tx_status_code or self.status_details_code

    def row(self) -> TransactionRow:
        request, response = self.request, self.response
        return TransactionRow(
            transaction_key=self.key,
            session_id=self.session_id,
            tag=self.tag,
            operation=self.operation,
            resource=self.resource,
            requested_at=Micros(request.at_us),
            completed_at=_at(response),
            outcome=self.outcome,
            transaction_identifier=self.identifier,
            amount=self.amount,
            currency=self.currency,
            abort_requested=self.abort_requested,
            update_count=self.update_count,
            action_count=self.action_count,
            duration_ms=_between(request, response),
            transaction_type=self.transaction_type,
            status_details_code=self.status_details_code,
            error_type=self.error_type,
            referenced_transaction_identifier=request.referenced,
            request_seq=request.seq,
            response_seq=_seq(response),
        )


@attrs.define(eq=False)
class _State(_Row):
    # The transaction's key, not the transaction: no reference cycle, so a finished
    # transaction is freed at once instead of waiting for the garbage collector.
    key: str
    update: Observed
    left_us: int | None = None

    @property
    def abortable(self) -> bool:
        return self.update.abortable == "true"

    def row(self) -> TransactionStateRow:
        update = self.update
        return TransactionStateRow(
            transaction_key=self.key,
            session_id=update.session_id,
            seq=update.seq,
            state=update.state,
            state_details=update.state_details,
            abortable=self.abortable,
            entered_at=Micros(update.at_us),
            time_in_state_ms=_ms(update.at_us, self.left_us),
        )


@attrs.define(eq=False)
class _Window(_Row):
    key: str  # the key, not the transaction: see _State
    opened: Observed
    closed: Observed | None = None

    def row(self) -> AbortWindowRow:
        opened, closed = self.opened, self.closed
        return AbortWindowRow(
            transaction_key=self.key,
            opened_at=Micros(opened.at_us),
            closed_at=_at(closed),
            duration_ms=_between(opened, closed),
            session_id=opened.session_id,
            opened_seq=opened.seq,
            closed_seq=_seq(closed),
        )


@attrs.define(eq=False)
class _Action(_Row):
    txn: _Transaction
    asked: Observed
    name: str | None
    answered: Observed | None = None
    answer: str | None = None
    attempts: int = 0

    def row(self) -> ActionWaitRow:
        asked, answered = self.asked, self.answered
        return ActionWaitRow(
            transaction_key=self.txn.key,
            action=self.name,
            asked_at=Micros(asked.at_us),
            answered_at=_at(answered),
            answer=self.answer,
            wait_ms=_between(asked, answered),
            session_id=self.txn.session_id,
            asked_seq=asked.seq,
            answered_seq=_seq(answered),
            attempts=self.attempts,
        )


@attrs.define(eq=False)
class _Abort(_Row):
    txn: _Transaction | None
    request: Observed
    was_abortable: bool = attrs.field(
        default=attrs.Factory(lambda self: self.txn is not None and self.txn.abortable, True)
    )
    response: Observed | None = None
    error_type: str | None = None

    def row(self) -> AbortRow:
        request, response = self.request, self.response
        return AbortRow(
            transaction_key=self.txn.key if self.txn else None,
            requested_at=Micros(request.at_us),
            was_abortable=self.was_abortable,
            response_status=response.status if response else None,
            answered_at=_at(response),
            session_id=request.session_id,
            tag=request.tag,
            error_type=self.error_type,
            request_seq=request.seq,
            response_seq=_seq(response),
        )


@attrs.define
class _Request:
    """A client request and what it belongs to, while its tag is remembered."""

    event: Observed
    txn: _Transaction | None = None  # the transaction it starts or acts on
    abort: _Abort | None = None
    action: _Action | None = None  # the action a signature request answers
    answered: bool = False
    first_update: bool = False


class _Session:
    """The fold's state for one POS connection."""

    def __init__(self, projector: Projector, session_id: str) -> None:
        self._out = projector
        self._dialect = projector.dialect
        self._session_id = session_id
        self._requests: dict[str | None, _Request] = {}  # by tag; the latest use of a tag
        self._open: dict[int, _Request] = {}  # by request seq, in arrival order
        self._tag_uses: dict[str | None, int] = {}
        self._keys: set[str] = set()
        self._kinds = Kinds(self._dialect)
        self._in_flight: InFlight[_Transaction] = InFlight()  # executes without a response

    # --- dispatch -------------------------------------------------------------------

    def feed(self, event: Observed) -> None:
        if event.kind == "malformed":
            self._find(event, Rule.MALFORMED_MESSAGE, None, event.parse_note or "not a P3 message")
            return
        if event.kind != "message":
            return
        kind = self._kinds.of(event.msg_type)
        if event.sender == "client" and kind is Kind.REQUEST:
            self._on_request(event)
        elif event.sender == "server" and kind is Kind.RESPONSE:
            self._on_response(event)
        elif event.sender == "server" and kind in (Kind.UPDATE, Kind.ACTION):
            self._on_progress(event)

    def close(self, event: Observed) -> None:
        """The connection closed: every open request is missing its response."""
        for request in self._open.values():
            txn = request.txn if request.abort is None and request.action is None else None
            self._find(
                event,
                Rule.MISSING_RESPONSE,
                request.txn,
                f"{request.event.msg_type} (tag {request.event.tag}, seq {request.event.seq}) "
                "had no response when the connection closed",
            )
            if txn is not None:
                self._link(txn, event)
                self._end_observation(txn, event)

    # --- client requests ------------------------------------------------------------

    def _on_request(self, event: Observed) -> None:
        msg_type, tag = event.msg_type, event.tag
        uses = self._tag_uses.get(tag, 0) + 1
        self._tag_uses[tag] = uses
        request = _Request(event)
        operation = OPERATIONS.get(msg_type or "")
        if operation is not None:
            request.txn = _Transaction(self._new_key(tag), event, operation)
            self._out.touch(request.txn)
            self._link(request.txn, event)
        if uses > 1:
            earlier = self._requests[tag].event
            self._find(
                event,
                Rule.TAG_REUSED,
                request.txn,
                f"tag {tag} was already used by {earlier.msg_type} at seq {earlier.seq}",
            )
        self._requests[tag] = request
        self._open[event.seq] = request
        execute = request.txn if msg_type == EXECUTE else None
        running = self._in_flight.request(tag, event.resource, execute)
        if execute is not None and running:
            self._find(
                event,
                Rule.EXECUTE_WHILE_BUSY,
                execute,
                f"{execute.resource} is still running {running[-1].key} (no final response yet)",
            )
        elif msg_type == self._kinds.abort:
            self._on_abort(request)
        elif msg_type == SIGNATURE:
            self._on_signature(request)

    def _new_key(self, tag: str | None) -> str:
        """`<session>:<tag>`, with `#2`, `#3`, ... for a reused tag: unique in the
        session whatever the tags look like."""
        key = base = f"{self._session_id}:{tag}"
        uses = 1
        while key in self._keys:
            uses += 1
            key = f"{base}#{uses}"
        self._keys.add(key)
        return key

    def _on_abort(self, request: _Request) -> None:
        event = request.event
        txn = self._in_flight.abort_target(self._dialect.abort, event.resource, event.abort_tag)
        abort = _Abort(txn, event)
        request.abort, request.txn = abort, txn
        self._out.touch(abort)
        if txn is None:
            self._find(
                event, Rule.ABORT_NOT_ABORTABLE, None, f"no execute in flight on {event.resource}"
            )
            return
        self._link(txn, event)
        if not txn.abortable:
            state = txn.latest_state.update.state if txn.latest_state else None
            self._find(
                event,
                Rule.ABORT_NOT_ABORTABLE,
                txn,
                f"the latest update ({state or 'none yet'}) was not abortable "
                "and no action was waiting",
            )
        txn.abort_requested = True
        self._out.touch(txn)
        if txn.action is not None:  # answering an action with an abort is allowed
            request.action = txn.action
            self._answer(txn.action, event, "abort")

    def _on_signature(self, request: _Request) -> None:
        event = request.event
        txn = self._in_flight.acted_on(event.resource)
        if txn is None or txn.action is None:
            self._find(
                event,
                Rule.SIGNATURE_WITHOUT_ACTION,
                txn,
                f"no action was waiting on {event.resource}",
            )
            return
        request.txn, request.action = txn, txn.action
        self._link(txn, event)
        on_receipt = event.sign_on_receipt == "true"
        self._answer(txn.action, event, "on_receipt" if on_receipt else "signature")

    def _answer(self, action: _Action, event: Observed, answer: str) -> None:
        action.answered, action.answer = event, answer
        action.attempts += 1
        txn = action.txn
        txn.action = None
        txn.waited_us += event.at_us - action.asked.at_us
        self._out.touch(action)

    # --- server messages ------------------------------------------------------------

    def _on_response(self, event: Observed) -> None:
        request = self._known_request(event, Rule.DUPLICATE_RESPONSE, "a second response")
        if request is None:
            return
        request.answered = True
        del self._open[request.event.seq]
        txn = request.txn
        if txn is not None:
            self._link(txn, event)
        if request.abort is not None:
            self._on_abort_response(request.abort, event)
        elif txn is not None and request.action is None:
            self._finish(txn, event)
        if request.action is not None:  # a signature, or an abort, that answered an action
            self._reopen_if_refused(request.action, request.event, event)
        self._latency(request, Step.RESPONSE, event)

    def _on_abort_response(self, abort: _Abort, event: Observed) -> None:
        abort.response = event
        if status_is_error(event.status):
            abort.error_type = event.error_type
        self._out.touch(abort)

    def _reopen_if_refused(self, action: _Action, answer: Observed, response: Observed) -> None:
        """A refused answer (a signature or an abort the server said no to) leaves the
        action open: the POS may answer again."""
        txn = action.txn
        refused = status_is_error(response.status) and action.answered is answer
        if refused and txn.response is None and txn.action is None:
            txn.waited_us -= answer.at_us - action.asked.at_us
            action.answered, action.answer = None, None
            txn.action = action
            self._out.touch(action)

    def _finish(self, txn: _Transaction, event: Observed) -> None:
        txn.response = event
        if status_is_error(event.status):
            txn.outcome = ERROR
            txn.error_type = event.error_type
        else:
            txn.learn(event)
            txn.outcome = event.tx_status or UNKNOWN
        self._in_flight.finish(txn)
        self._end_observation(txn, event)

    def _end_observation(self, txn: _Transaction, event: Observed) -> None:
        """The transaction ends (response or close): its state, window and action too."""
        if txn.latest_state is not None and txn.latest_state.left_us is None:
            txn.latest_state.left_us = event.at_us
            self._out.touch(txn.latest_state)
        if txn.window is not None:
            txn.window.closed = event
            self._out.touch(txn.window)
            txn.window = None
        txn.action = None
        self._out.touch(txn)

    def _on_progress(self, event: Observed) -> None:
        request = self._known_request(
            event, Rule.MESSAGE_AFTER_RESPONSE, "arrived after the response"
        )
        if request is None or request.txn is None or request.abort or request.action:
            return
        txn = request.txn
        self._link(txn, event)
        txn.learn(event)
        step = self._kinds.step(event.msg_type, had_update=request.first_update)
        if event.msg_type in UPDATES:
            self._on_update(txn, event)
            request.first_update = True
        elif event.msg_type in ACTIONS:
            self._on_action(txn, event)
        if step is Step.FIRST_UPDATE or step is Step.ACTION:
            self._latency(request, step, event)

    def _on_update(self, txn: _Transaction, event: Observed) -> None:
        state = _State(txn.key, event)
        previous = txn.latest_state
        if previous is not None:
            previous.left_us = event.at_us
            self._out.touch(previous)
        txn.latest_state = state
        txn.update_count += 1
        self._out.touch(state)
        self._out.touch(txn)
        if state.abortable and txn.window is None:
            txn.window = _Window(txn.key, event)
            self._out.touch(txn.window)
        elif not state.abortable and txn.window is not None:
            txn.window.closed = event
            self._out.touch(txn.window)
            txn.window = None

    def _on_action(self, txn: _Transaction, event: Observed) -> None:
        txn.action = _Action(txn, event, event.action)
        txn.action_count += 1
        self._out.touch(txn.action)
        self._out.touch(txn)

    def _known_request(self, event: Observed, after_rule: Rule, after: str) -> _Request | None:
        """The open request a server message belongs to, or None and a finding."""
        request = self._requests.get(event.tag)
        if request is None:
            self._find(event, Rule.UNKNOWN_TAG, None, f"no request was sent with tag {event.tag}")
            return None
        if request.answered:
            self._find(
                event,
                after_rule,
                request.txn,
                f"{event.msg_type} {after} to {request.event.msg_type} (seq {request.event.seq})",
            )
            return None
        return request

    # --- output ---------------------------------------------------------------------

    def _latency(self, request: _Request, step: Step, event: Observed) -> None:
        start = request.event
        latency = (event.at_us - start.at_us) / 1000
        # The POS's share is the time actions waited for it, within its own transaction.
        starts = request.txn is not None and request.txn.request is start
        pos_ms = request.txn.waited_us / 1000 if starts and request.txn else 0.0
        self._out.add(
            LatencyRow(
                session_id=self._session_id,
                transaction_key=request.txn.key if request.txn else None,
                tag=start.tag,
                request_type=start.msg_type or "",
                step=step.value,
                requested_at=Micros(start.at_us),
                step_at=Micros(event.at_us),
                latency_ms=latency,
                server_ms=latency - pos_ms,
                pos_ms=pos_ms,
                request_seq=start.seq,
                step_seq=event.seq,
            )
        )

    def _link(self, txn: _Transaction, event: Observed) -> None:
        self._out.add(TransactionEventRow(txn.key, self._session_id, event.seq))

    def _find(self, event: Observed, rule: Rule, txn: _Transaction | None, detail: str) -> None:
        self._out.add(
            FindingRow(self._session_id, txn.key if txn else None, event.seq, rule.value, detail)
        )


class Projector:
    """The fold over a whole store: `feed` events in seq order, `take_changes` rows."""

    def __init__(self, dialect: Dialect = DEFAULT_DIALECT) -> None:
        self.dialect = dialect
        self._sessions: dict[str, _Session] = {}
        self._touched: dict[int, _Row] = {}  # by id: rows to (re)write, in first-touch order
        self._added: list[Any] = []  # rows that never change once made

    def feed(self, event: Observed) -> None:
        session = self._sessions.get(event.session_id)
        if event.kind == ConnectionClosed.KIND:
            if session is not None:
                session.close(event)
                del self._sessions[event.session_id]
            return
        if session is None:
            session = self._sessions[event.session_id] = _Session(self, event.session_id)
        session.feed(event)

    def feed_all(self, events: Iterable[Observed]) -> None:
        for event in events:
            self.feed(event)

    def take_changes(self) -> dict[Table, list[Any]]:
        """Every row made or changed since the last call, grouped by table."""
        by_type: dict[type, list[Any]] = {}
        for row in (*(state.row() for state in self._touched.values()), *self._added):
            rows = by_type.get(type(row))
            if rows is None:
                rows = by_type[type(row)] = []
            rows.append(row)
        self._touched.clear()
        self._added.clear()
        return {TABLE_BY_ROW[row_type]: rows for row_type, rows in by_type.items()}

    def touch(self, state: _Row) -> None:
        self._touched[id(state)] = state

    def add(self, row: object) -> None:
        self._added.append(row)
