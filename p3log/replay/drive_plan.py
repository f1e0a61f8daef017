"""The drive plan: the POS side of a recorded session, as a sans-IO state machine.

Rules it keeps:

- Everything that decides what the replaying POS does lives here; the trio layer
  (`drive.py`) only moves bytes and keeps time. The plan is told what the live server
  sent and when (`receive(data, now)`, `server_closed(now)`), says when the next
  thing is due (`next_deadline()`) and hands it out (`take_due(now)`). `now` is any
  monotonic time in seconds (the trio layer passes `trio.current_time()`).
- It never sends a recorded POS message before the live conversation reached the
  point where it was recorded, and never out of the recorded order.
- The store holds no merchant secret: the login goes out with the secret the plan
  was given in place of the recorded redaction marker.

Theory of operation
-------------------
Each recorded POS message waits for every server message recorded before it: the
conversation has *reached* it once those arrived live (or, under `continue`, were
given up as missing). It then goes out after the recorded think time, the gap
between the latest of those server messages and itself, divided by the speed
(`Pacing`; `asap` drops the gap), counted from the moment the latest of them
arrived live (messages before the server's first one count from the connection's
opening). Deadlines are absolute, so lateness never accumulates.

Outgoing POS messages carry fresh tags: each recorded tag gets one new tag the first
time it is sent, and every later message with that recorded tag (or quoting it, as
an abort does under `body_tag` correlation) gets the same one. Identifiers the live
server issued replace the recorded ones in later POS messages (an amend's
`referencedTransactionIdentifier`): both maps are `rewrite.Renames`, used the other
way round than in serve mode.

Server messages are expected per operation: a live message's tag names the recorded
request it answers, and it is compared (`normalise.py`, with the live identifiers
read back as the recorded ones) with the next recorded server message of that
operation that is not accounted for yet. Operations may interleave differently
than recorded (an abort's response before or after the execute's next update);
within one operation the order is the recorded one.

What does not match is a `Divergence`, recorded, and then per `on_unexpected`:

- `fail` (default): the run stops (the trio layer closes the link);
- `continue`: the run goes on. A live message that matches a later message of its
  operation accounts for the ones it skipped (missing); one with the type the
  operation expected next takes that place (changed); anything else is set aside
  (extra).

A server that sends nothing the recording expects for `timeout` seconds beyond the
recorded gap, or closes the link while the recording still had messages to
exchange, ends the run whatever `on_unexpected` says.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs

from p3log.net.close_codes import NORMAL_CLOSURE, passed_on
from p3log.protocol import jsontext
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.model import body_key
from p3log.replay.divergence import (
    Arrival,
    Divergence,
    DivergenceAction,
    DivergenceRule,
    Expectation,
    arrival_of,
    expectation_of,
)
from p3log.replay.normalise import VolatilePaths, comparable, decode_object
from p3log.replay.plan import Close, Pacing, Send
from p3log.replay.recording import RecordedMessage, RecordedSession, ReplayError
from p3log.replay.rewrite import Renames

__all__ = [
    "DEFAULT_TIMEOUT",
    "DriveOnUnexpected",
    "DriveOutcome",
    "DrivePlan",
    "DriveStep",
    "Received",
    "needs_secret",
]

DriveOnUnexpected = Literal["fail", "continue"]
DriveOutcome = Literal["complete", "diverged", "incomplete"]
DriveStep = Send | Close | Divergence

#: Seconds a live server may be later than recorded before the run gives up on it.
DEFAULT_TIMEOUT = 30.0
_EXPECTATIONS_KEPT = 5
_LOGIN_BODY = body_key("LOGIN_MERCHANT_REQUEST")
_SECRET_KEY = "merchantSecret"


def _new_tag() -> str:
    return str(uuid.uuid4())


@attrs.frozen
class Received:
    """A live server message stood for this recorded one: it matched (`exact`), or,
    under `continue`, it was taken as a changed version of it."""

    recorded: RecordedMessage
    exact: bool = True


class DrivePlan:
    """The POS side of one replay run (see the module doc)."""

    def __init__(
        self,
        session: RecordedSession,
        *,
        pacing: Pacing | None = None,
        on_unexpected: DriveOnUnexpected = "fail",
        volatile: VolatilePaths | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        secret: str | None = None,
        new_tag: Callable[[], str] = _new_tag,
        dialect: Dialect = DEFAULT_DIALECT,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number, not {timeout}")
        self.session = session
        self.server_received = 0  # every live server message, matched or not
        self.pacing = pacing or Pacing()
        self.on_unexpected: DriveOnUnexpected = on_unexpected
        self.volatile = volatile or VolatilePaths.between_runs(dialect)
        self.timeout = timeout
        self.renames = Renames(dialect=dialect)
        self.divergences: list[Divergence] = []
        self.failed: Divergence | None = None
        self._secret = secret
        self._new_tag = new_tag

        messages = session.messages
        self._messages = messages
        self._opened_ns = (
            session.opened_ns
            if session.opened_ns is not None
            else (messages[0].at_ns if messages else 0)
        )
        self._pos = [i for i, m in enumerate(messages) if m.sender == "client"]
        self._server = [i for i, m in enumerate(messages) if m.sender == "server"]
        if not secret and needs_secret(session):
            raise ReplayError(
                f"session {session.session_id} logs in, and the store does not hold the "
                "merchant secret: it has to be given"
            )
        self._pos_of = {index: p for p, index in enumerate(self._pos)}
        self._server_of = {index: k for k, index in enumerate(self._server)}
        # For each POS message: how many server messages were recorded before it.
        self._before: list[int] = []
        seen = 0
        for message in messages:
            if message.sender == "server":
                seen += 1
            elif message.sender == "client":
                self._before.append(seen)
        # For each server message: its comparable form, its operation (the recorded
        # tag) and the POS message that introduced that tag (None: none did).
        self._keys = [self._key(messages[i]) for i in self._server]
        self._ops: list[str | None] = [messages[i].tag for i in self._server]
        self._request: list[int | None] = []
        introduced: dict[str, int] = {}
        pos_index = 0
        for message in messages:
            if message.sender == "client":
                if message.tag is not None:
                    introduced[message.tag] = pos_index
                pos_index += 1
            elif message.sender == "server":
                tag = message.tag
                self._request.append(introduced.get(tag) if tag is not None else None)
        self._queues: dict[str | None, list[int]] = {}
        for k, op in enumerate(self._ops):
            self._queues.setdefault(op, []).append(k)

        self._accounted: list[float | None] = [None] * len(self._server)
        self._exact = [False] * len(self._server)
        self._prefix = 0  # server[:prefix] are all accounted for
        self._reached: list[float] = []  # reached[k]: when server[:k + 1] all had arrived
        self._sent_at: list[float | None] = [None] * len(self._pos)
        self._next_pos = 0
        self._started_at: float | None = None
        close = session.close
        self._theirs_to_close = close is not None and close.by == "server"
        self._closed = False

    # --- what the I/O layer calls ------------------------------------------------

    def start(self, now: float) -> None:
        """The link to the server is open at `now`."""
        self._started_at = now

    def receive(
        self, data: bytes, now: float, stored: bytes | None = None
    ) -> Received | Divergence:
        """A live server message arrived at `now`: what it stood for, or the divergence.

        `stored` is the message as the store recorded it (redacted, as the recording
        was), None when `data` is that already: it is what is compared and reported;
        `data` names the operation (its tag) and the identifiers the server issued."""
        if self._started_at is None:
            raise RuntimeError("start() the plan before it receives anything")
        self.server_received += 1
        live_obj = decode_object(data)
        queues = self._queues_for(live_obj)
        if stored is not None:
            data = stored
            obj = decode_object(stored)
        else:
            obj = live_obj
        plain = self.renames.incoming(obj) if obj is not None else None
        heads: list[int] = []
        for queue in queues:
            eligible = list(self._eligible(queue))
            if eligible:
                heads.append(eligible[0])
            looked = eligible if self.on_unexpected == "continue" else eligible[:1]
            for position, k in enumerate(looked):
                if self._matches(k, obj, plain, data):
                    skipped = eligible[:position]
                    divergence = None
                    if skipped:
                        arrival = self._arrival(obj, data, k)
                        expected = tuple(
                            expectation_of(self._server_message(j), self.volatile, arrival)
                            for j in skipped[:_EXPECTATIONS_KEPT]
                        )
                        divergence = self._diverge("unexpected_message", arrival, expected)
                    for j in skipped:
                        self._account(j, now, exact=False)
                    self._learn(k, live_obj)
                    self._account(k, now, exact=True)
                    return divergence or Received(self._server_message(k))
        same_type = next(
            (k for k in heads if obj is not None and self._type(k) == obj.get("type")), None
        )
        arrival = self._arrival(obj, data, same_type)
        divergence = self._diverge("unexpected_message", arrival)
        if self.failed is None and same_type is not None:  # continue: a changed message
            self._learn(same_type, live_obj)
            self._account(same_type, now, exact=False)
        return divergence

    def server_closed(self, now: float) -> Divergence | None:
        """The server closed the link at `now`: a divergence if the recording had more."""
        if self.failed is not None or self._closed:
            return None
        self._closed = True
        if self._next_pos == len(self._pos) and self._prefix == len(self._server):
            return None
        return self._diverge("closed_early", None, fatal=True)

    def next_deadline(self) -> float | None:
        """When the next thing is due (maybe already past); None while nothing is."""
        if self.finished:
            return None
        found = [d for d in (self._send_deadline(), self._timeout_deadline()) if d is not None]
        return min(found) if found else None

    def take_due(self, now: float) -> list[DriveStep]:
        """Everything due at `now`, in order: POS messages to send (from here on they
        count as sent at `now`), our close of the link, or a timeout divergence."""
        due: list[DriveStep] = []
        if self.finished:
            return due
        while (deadline := self._send_deadline()) is not None and deadline <= now:
            if self._next_pos < len(self._pos):
                due.append(self._render(self._next_pos))
                self._sent_at[self._next_pos] = now
                self._next_pos += 1
            else:
                due.append(self._close())
                self._closed = True
                return due
        timeout = self._timeout_deadline()
        if timeout is not None and timeout <= now:
            due.append(self._diverge("timeout", None, fatal=True))
        return due

    # --- state -------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every POS message sent, every server message accounted for, the link closed
        (by whoever the recording says)."""
        return (
            self.failed is None
            and self._closed
            and self._next_pos == len(self._pos)
            and self._prefix == len(self._server)
        )

    @property
    def finished(self) -> bool:
        return self.failed is not None or self._closed

    @property
    def outcome(self) -> DriveOutcome:
        if self.failed is not None:
            return "diverged"
        return "complete" if self.complete else "incomplete"

    @property
    def pos_sent(self) -> int:
        return self._next_pos

    @property
    def pos_recorded(self) -> int:
        return len(self._pos)

    @property
    def server_matched(self) -> int:
        """Server messages a live one matched exactly."""
        return sum(self._exact)

    @property
    def server_recorded(self) -> int:
        return len(self._server)

    # --- inside: the server's side -------------------------------------------------

    def _server_message(self, k: int) -> RecordedMessage:
        return self._messages[self._server[k]]

    def _type(self, k: int) -> str | None:
        return self._server_message(k).msg_type

    def _key(self, message: RecordedMessage) -> str:
        if message.payload is not None:
            return comparable(message.payload, self.volatile)
        return "raw:" + message.raw.hex()

    def _queues_for(self, obj: dict[str, Any] | None) -> list[str | None]:
        """The operations a live message may belong to: the one its tag names; for a
        message with a tag the POS never sent, no tag or no JSON at all, those whose
        recorded tag no live request stands for (the recording had them too)."""
        tag = obj.get("tag") if obj is not None else None
        if isinstance(tag, str):
            recorded = self.renames.recorded_tag(tag)
            if recorded is not None:
                return [recorded] if recorded in self._queues else []
        return [op for op in self._queues if op is None or op not in self.renames.tags]

    def _eligible(self, op: str | None) -> Iterator[int]:
        """The operation's server messages not yet accounted for, whose request went out."""
        for k in self._queues[op]:
            if self._accounted[k] is not None:
                continue
            request = self._request[k]
            if request is not None and self._sent_at[request] is None:
                return
            yield k

    def _matches(
        self, k: int, obj: dict[str, Any] | None, plain: dict[str, Any] | None, data: bytes
    ) -> bool:
        recorded = self._server_message(k)
        if obj is None or recorded.payload is None:
            return obj is None and recorded.raw == data
        live = plain
        if recorded.msg_type == obj.get("type"):
            assuming = self.renames.new_ids(recorded.payload, obj)
            if assuming:
                live = self.renames.incoming(obj, assuming=assuming)
        assert live is not None
        return comparable(live, self.volatile) == self._keys[k]

    def _learn(self, k: int, obj: dict[str, Any] | None) -> None:
        recorded = self._server_message(k).payload
        if obj is not None and recorded is not None and recorded.get("type") == obj.get("type"):
            self.renames.learn_ids(recorded, obj)

    def _account(self, k: int, now: float, *, exact: bool) -> None:
        self._accounted[k] = now
        self._exact[k] = exact
        while self._prefix < len(self._server) and self._accounted[self._prefix] is not None:
            at = self._accounted[self._prefix]
            assert at is not None
            self._reached.append(max(at, self._reached[-1]) if self._reached else at)
            self._prefix += 1

    def _arrival(self, obj: dict[str, Any] | None, data: bytes, k: int | None) -> Arrival:
        """The live message, normalised in the recording's terms (identifiers as the
        recorded message `k` would have them)."""
        live = None
        if obj is not None:
            recorded = self._server_message(k).payload if k is not None else None
            assuming = self.renames.new_ids(recorded, obj) if recorded is not None else {}
            live = self.renames.incoming(obj, assuming=assuming)
        return arrival_of(obj, live, data, self.volatile)

    # --- inside: the POS's side ----------------------------------------------------

    def _send_deadline(self) -> float | None:
        """When the next POS message (or, after the last, our close) is due; None while
        the conversation has not reached it, or nothing is left for us to do."""
        if self.finished or self._started_at is None:
            return None
        if self._next_pos < len(self._pos):
            before = self._before[self._next_pos]
            at_ns = self._messages[self._pos[self._next_pos]].at_ns
        elif self._theirs_to_close:
            return None
        else:
            before = len(self._server)
            close = self.session.close
            last = self._messages[-1].at_ns if self._messages else self._opened_ns
            at_ns = close.at_ns if close is not None else last
        if self._prefix < before:
            return None
        if before == 0:
            anchored_at, anchor_ns = self._started_at, self._opened_ns
        else:
            anchored_at = self._reached[before - 1]
            anchor_ns = self._server_message(before - 1).at_ns
        return anchored_at + self.pacing.delay(at_ns - anchor_ns)

    def _timeout_deadline(self) -> float | None:
        """When the server is too late: the message before the earliest server message
        not accounted for happened live, plus the recorded gap, plus `timeout`; after
        the last message, the same for a close the recorded server made."""
        if self.finished or self._started_at is None:
            return None
        if self._prefix < len(self._server):
            index = self._server[self._prefix]
            at_ns = self._messages[index].at_ns
        elif self._next_pos == len(self._pos) and self._theirs_to_close:
            index = len(self._messages)
            close = self.session.close
            assert close is not None
            at_ns = close.at_ns
        else:
            return None
        happened: float | None
        if index == 0:
            happened, then_ns = self._started_at, self._opened_ns
        else:
            previous = self._messages[index - 1]
            if previous.sender == "client":
                happened = self._sent_at[self._pos_of[index - 1]]
            else:
                happened = self._accounted[self._server_of[index - 1]]
            then_ns = previous.at_ns
            if happened is None:
                return None
        return happened + max(at_ns - then_ns, 0) / 1e9 + self.timeout

    def _render(self, p: int) -> Send:
        message = self._messages[self._pos[p]]
        if message.kind != "message" or message.payload is None:
            return Send(message.raw, message.seq, message.msg_type)  # as recorded
        obj = message.payload
        tag = obj.get("tag")
        if isinstance(tag, str) and tag not in self.renames.tags:
            self.renames.learn_tag(tag, self._new_tag())
        obj = self.renames.outgoing(obj)
        body = _secret_body(obj)
        if body is not None and self._secret:
            obj = {**obj, _LOGIN_BODY: {**body, _SECRET_KEY: self._secret}}
        return Send(jsontext.dumps(obj).encode(), message.seq, message.msg_type)

    def _close(self) -> Close:
        close = self.session.close
        if close is None:  # the recording just ends: so does the run, normally
            return Close(NORMAL_CLOSURE, "")
        return Close(passed_on(close.code), close.reason)

    # --- divergences ---------------------------------------------------------------

    def _diverge(
        self,
        rule: DivergenceRule,
        arrival: Arrival | None,
        expected: tuple[Expectation, ...] | None = None,
        *,
        fatal: bool = False,
    ) -> Divergence:
        if expected is None:
            expected = self._expectations(arrival)
        action: DivergenceAction = "fail" if fatal or self.on_unexpected == "fail" else "continue"
        waited = self.timeout if rule == "timeout" else None
        divergence = Divergence(rule, action, arrival, expected, None, "server", waited)
        self.divergences.append(divergence)
        if action == "fail":
            self.failed = divergence
        return divergence

    def _expectations(self, arrival: Arrival | None) -> tuple[Expectation, ...]:
        """What the recording was ready for: the next server message of each operation;
        when there is none, the POS messages still to send."""
        found: list[Expectation] = []
        for op in self._queues:
            k = next(self._eligible(op), None)
            if k is not None:
                found.append(expectation_of(self._server_message(k), self.volatile, arrival))
        found.sort(key=lambda e: e.seq)
        if not found:
            pending = [self._messages[i] for i in self._pos[self._next_pos :]]
            found = [expectation_of(m, self.volatile, None) for m in pending]
        return tuple(found[:_EXPECTATIONS_KEPT])


def needs_secret(session: RecordedSession) -> bool:
    """Whether a recorded POS message of `session` carries a merchant secret (a login):
    driving it takes the secret, which the store never holds."""
    return any(_secret_body(m.payload) is not None for m in session.pos_messages)


def _secret_body(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The login body of `obj` when it carries a merchant secret."""
    body = obj.get(_LOGIN_BODY) if obj is not None else None
    return body if isinstance(body, dict) and _SECRET_KEY in body else None
