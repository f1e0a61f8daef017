"""The serve plan: the PayServer side of a recorded session, as a sans-IO state machine.

Rules it keeps:

- Everything that decides what the replaying server does lives here; the trio layer
  (`serve.py`) only moves bytes and keeps time. The plan never touches a socket or a
  clock: it is told what arrived and when (`receive(data, now)`), says when the next
  thing is due (`next_deadline()`) and hands out what is due (`take_due(now)`).
  `now` is any monotonic time in seconds (the trio layer passes `trio.current_time()`).
- It never sends a recorded server message before the live POS sent what that
  message answered, and never out of the recorded order.

Theory of operation
-------------------
Each recorded server message *follows* the latest POS message recorded before it,
its anchor. It is *ready* once the live POS sent a match for its anchor and, when
that is another message, for the request whose tag it carries (an execute's updates
after an abort follow the abort, but belong to the execute). Its deadline is the
anchor's live arrival plus the recorded gap after the anchor divided by the speed
(`Pacing`; `asap` and `reactive` drop the gap); messages recorded before the POS's
first one are anchored at the connection's opening. Ready messages go out in
recorded order, so one whose deadline has passed still waits for those recorded
before it: server messages recorded before the POS's next message keep their order
relative to it.

A live POS message is matched against its *candidates*: the recorded POS messages
not yet matched all of whose preceding server messages are ready. The earliest one
not yet matched is always a candidate; later ones are too when no server message
stands between, so operations may interleave. It matches the first candidate with
the same normal form (`normalise.py`), after `Renames.incoming` has put fresh ids
and quoted tags back in the recording's terms. A match teaches the plan the POS's
tag for the operation and releases what depends on it.

What matches no candidate is a `Divergence`: recorded, and then `fail` (send
nothing more; the trio layer closes the link), `skip` (ignore it) or `error`
(answer it with an error response, sent before anything else that is due).
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs

from p3log.net.close_codes import passed_on
from p3log.protocol import jsontext
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.replay.divergence import (
    Arrival,
    Divergence,
    DivergenceRule,
    Expectation,
    OnUnexpected,
    arrival_of,
    error_reply,
    expectation_of,
)
from p3log.replay.normalise import VolatilePaths, comparable, decode_object
from p3log.replay.recording import RecordedClose, RecordedMessage, RecordedSession
from p3log.replay.rewrite import Renames, fresh_identifier

__all__ = ["Close", "Matched", "Outgoing", "Pacing", "PacingMode", "Send", "ServePlan"]

PacingMode = Literal["speed", "asap", "reactive"]
Outcome = Literal["complete", "diverged", "incomplete"]

_EXPECTATIONS_KEPT = 5


def _positive_finite(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number, not {value}")


@attrs.frozen
class Pacing:
    """When recorded server messages go out, relative to the POS message they follow.

    `speed`: the recorded gap divided by `speed`. `asap` and `reactive`: no timed
    waits at all; a server message goes out as soon as the POS message it follows
    has arrived and those recorded before it are out (in serve mode the two
    coincide, as a server message can never go before what it answers).
    """

    mode: PacingMode = "speed"
    speed: float = attrs.field(default=1.0, validator=_positive_finite)

    @classmethod
    def at_speed(cls, speed: float) -> Pacing:
        return cls("speed", speed)

    def delay(self, gap_ns: int) -> float:
        """Seconds to wait after the anchor for a recorded gap of `gap_ns`."""
        if self.mode != "speed":
            return 0.0
        return max(gap_ns, 0) / 1e9 / self.speed

    def describe(self) -> str:
        return f"speed {self.speed:g}" if self.mode == "speed" else self.mode


@attrs.frozen
class Send:
    """Bytes to send; `seq` is the recorded message's, None for an error reply."""

    data: bytes = attrs.field(repr=False)
    seq: int | None
    msg_type: str | None


@attrs.frozen
class Close:
    """Close the link, as the recorded server did."""

    code: int
    reason: str


Outgoing = Send | Close


@attrs.frozen
class Matched:
    """A live POS message matched this recorded one."""

    recorded: RecordedMessage


@attrs.frozen
class _Item:
    """A recorded server message (or the server's close) and what it waits for."""

    message: RecordedMessage | None
    close: RecordedClose | None
    anchor: int | None  # the POS message it follows (an index); None: the opening
    gap_ns: int  # recorded gap after the anchor
    deps: tuple[int, ...]  # POS messages that must have arrived: anchor and request


class ServePlan:
    """The server side of one replay run (see the module doc)."""

    def __init__(
        self,
        session: RecordedSession,
        *,
        pacing: Pacing | None = None,
        on_unexpected: OnUnexpected = "fail",
        volatile: VolatilePaths | None = None,
        fresh_ids: bool = False,
        new_id: Callable[[str], str] = fresh_identifier,
        dialect: Dialect = DEFAULT_DIALECT,
    ) -> None:
        self.session = session
        self.pacing = pacing or Pacing()
        self.on_unexpected: OnUnexpected = on_unexpected
        self.volatile = volatile or VolatilePaths.default(dialect)
        self.dialect = dialect
        self.renames = Renames(fresh_ids=fresh_ids, new_id=new_id, dialect=dialect)
        self.divergences: list[Divergence] = []
        self.failed: Divergence | None = None

        self._pos = session.pos_messages
        self._keys = [self._recorded_key(message) for message in self._pos]
        self._items = _items(session)
        self._server_count = sum(item.message is not None for item in self._items)
        self._items_before = _items_before(self._pos, self._items)
        self._arrival: list[float | None] = [None] * len(self._pos)
        self._unmatched = list(range(len(self._pos)))
        self._ready = 0  # items[:ready] are ready
        self._deadlines: list[float] = []
        self._next = 0  # items[next] is the next to go out
        self._started_at: float | None = None
        self._immediate: deque[Send] = deque()

    # --- what the I/O layer calls ------------------------------------------------

    def start(self, now: float) -> None:
        """The POS connected at `now`: server messages recorded before its first one
        are scheduled from here."""
        self._started_at = now
        self._advance()

    def receive(self, data: bytes, now: float, stored: bytes | None = None) -> Matched | Divergence:
        """A live POS message arrived at `now`: what it matched, or the divergence.

        `stored` is the message as the store recorded it (redacted, as the recording
        was), None when `data` is that already: it is what is compared and reported;
        `data` only teaches the POS's own tag."""
        if self._started_at is None:
            raise RuntimeError("start() the plan before it receives anything")
        seen = data if stored is None else stored
        obj = decode_object(data)
        shown = decode_object(seen) if stored is not None else obj
        live = self.renames.incoming(shown) if shown is not None else None
        index = self._match(seen, live)
        if index is not None:
            self._consume(index, obj, now)
            return Matched(self._pos[index])
        arrival = arrival_of(shown, live, seen, self.volatile)
        return self._diverge("unexpected_message", arrival, obj)

    def expects(self, data: bytes, stored: bytes | None = None) -> bool:
        """Whether a live POS message (`stored`: as the store recorded it, as in
        `receive`) would match now (nothing changes): how a multi-connection replay
        tells which recorded connection a POS opens."""
        seen = data if stored is None else stored
        obj = decode_object(seen)
        live = self.renames.incoming(obj) if obj is not None else None
        return self._match(seen, live) is not None

    def pos_closed(self) -> Divergence | None:
        """The POS closed the link: a divergence if the recording expected more."""
        if self.failed is not None or (not self._unmatched and self._server_pending() == 0):
            return None
        return self._diverge("closed_early", None, None)

    def next_deadline(self) -> float | None:
        """When the next thing is due (maybe already past); None while nothing is ready."""
        if self._immediate:
            return -math.inf
        if self.failed is not None or self._next >= self._ready:
            return None
        return self._deadlines[self._next]

    def take_due(self, now: float) -> list[Outgoing]:
        """Everything due at `now`, in order; it counts as sent from here on."""
        due: list[Outgoing] = list(self._immediate)
        self._immediate.clear()
        if self.failed is not None:
            return due
        while self._next < self._ready and self._deadlines[self._next] <= now:
            due.append(self._render(self._items[self._next]))
            self._next += 1
        return due

    # --- state -------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every recorded POS message matched and every server message sent (a recorded
        server-side close still to come, or beaten by the POS, changes nothing the POS
        could see)."""
        return self.failed is None and not self._unmatched and self._server_pending() == 0

    @property
    def outcome(self) -> Outcome:
        if self.failed is not None:
            return "diverged"
        return "complete" if self.complete else "incomplete"

    @property
    def pos_matched(self) -> int:
        return len(self._pos) - len(self._unmatched)

    @property
    def pos_recorded(self) -> int:
        return len(self._pos)

    @property
    def server_sent(self) -> int:
        return sum(item.message is not None for item in self._items[: self._next])

    @property
    def server_recorded(self) -> int:
        return self._server_count

    # --- inside ------------------------------------------------------------------

    def _recorded_key(self, message: RecordedMessage) -> str:
        if message.payload is not None:
            return comparable(message.payload, self.volatile)
        return _raw_key(message.raw)

    def _match(self, data: bytes, live: dict[str, Any] | None) -> int | None:
        """The first candidate the live message (ids read back) matches, if any."""
        key = comparable(live, self.volatile) if live is not None else _raw_key(data)
        return next((index for index in self._candidates() if self._keys[index] == key), None)

    def _candidates(self) -> Iterator[int]:
        for index in self._unmatched:
            if self._items_before[index] > self._ready:
                break  # this one, and every later one, still waits for server messages
            yield index

    def _consume(self, index: int, obj: dict[str, Any] | None, now: float) -> None:
        self._unmatched.remove(index)
        self._arrival[index] = now
        recorded_tag = self._pos[index].tag
        live_tag = obj.get("tag") if obj is not None else None
        if recorded_tag is not None and isinstance(live_tag, str):
            self.renames.learn_tag(recorded_tag, live_tag)
        self._advance()

    def _advance(self) -> None:
        """Extend the ready prefix as far as the matched POS messages allow."""
        assert self._started_at is not None
        while self._ready < len(self._items):
            item = self._items[self._ready]
            if any(self._arrival[dep] is None for dep in item.deps):
                return
            anchored_at = self._started_at if item.anchor is None else self._arrival[item.anchor]
            assert anchored_at is not None
            self._deadlines.append(anchored_at + self.pacing.delay(item.gap_ns))
            self._ready += 1

    def _server_pending(self) -> int:
        return sum(item.message is not None for item in self._items[self._next :])

    def _render(self, item: _Item) -> Outgoing:
        if item.close is not None:
            # as the tap passed it on (e.g. 1006, a vanished peer, as 1011)
            return Close(passed_on(item.close.code), item.close.reason)
        message = item.message
        assert message is not None
        data = message.raw
        # Malformed bytes go out exactly as recorded; a message only changes if a tag
        # or an identifier in it does.
        if message.kind == "message" and message.payload is not None:
            rewritten = self.renames.outgoing(message.payload)
            if rewritten is not message.payload:
                data = retagged(message, rewritten) or jsontext.dumps(rewritten).encode()
        return Send(data, message.seq, message.msg_type)

    def _diverge(
        self, rule: DivergenceRule, arrival: Arrival | None, obj: dict[str, Any] | None
    ) -> Divergence:
        expected = self._expectations(arrival)
        reply = None
        if self.on_unexpected == "error" and rule == "unexpected_message":
            what = (arrival.msg_type if arrival else None) or "message"
            text = f"this {what} diverges from the recorded session {self.session.session_id}"
            reply = error_reply(obj, self.dialect, text)
        divergence = Divergence(rule, self.on_unexpected, arrival, expected, reply)
        self.divergences.append(divergence)
        if self.on_unexpected == "fail":
            self.failed = divergence
        elif reply is not None:
            self._immediate.append(Send(reply, None, arrival.msg_type if arrival else None))
        return divergence

    def _expectations(self, arrival: Arrival | None) -> tuple[Expectation, ...]:
        """What the recording was ready for: POS candidates; when the POS closed with
        none left, the server messages still to send."""
        found: list[Expectation] = []
        for index in self._candidates():
            message = self._pos[index]
            found.append(expectation_of(message, self.volatile, arrival))
            if len(found) == _EXPECTATIONS_KEPT:
                break
        if not found and arrival is None:  # the POS closed: say what was still to send
            pending = [item.message for item in self._items[self._next :] if item.message]
            found = [expectation_of(m, self.volatile, None) for m in pending[:_EXPECTATIONS_KEPT]]
        return tuple(found)


def _items(session: RecordedSession) -> list[_Item]:
    """The server messages (and a server-side close) with their dependencies."""
    pos = session.pos_messages
    index_of = {message.seq: index for index, message in enumerate(pos)}
    opened = session.opened_ns
    if opened is None:
        opened = session.messages[0].at_ns if session.messages else 0
    requests: dict[str, int] = {}  # tag -> the POS message that introduced it
    latest: int | None = None
    items: list[_Item] = []

    def item_for(message: RecordedMessage | None, close: RecordedClose | None, at: int) -> _Item:
        deps: list[int] = [] if latest is None else [latest]
        tag = message.tag if message is not None else None
        request = requests.get(tag) if tag is not None else None
        if request is not None and request not in deps:
            deps.append(request)
        gap = at - (opened if latest is None else pos[latest].at_ns)
        return _Item(message, close, latest, gap, tuple(deps))

    for message in session.messages:
        if message.sender == "client":
            latest = index_of[message.seq]
            if message.tag is not None:
                requests.setdefault(message.tag, latest)
        else:
            items.append(item_for(message, None, message.at_ns))
    close = session.close
    if close is not None and close.by == "server":
        items.append(item_for(None, close, close.at_ns))
    return items


def _items_before(pos: tuple[RecordedMessage, ...], items: list[_Item]) -> list[int]:
    """For each POS message, how many server messages were recorded before it."""
    seqs = [item.message.seq for item in items if item.message is not None]
    counts: list[int] = []
    before = 0
    for message in pos:
        while before < len(seqs) and seqs[before] < message.seq:
            before += 1
        counts.append(before)
    return counts


def _raw_key(data: bytes) -> str:
    """The comparable form of bytes that are no JSON object: the bytes themselves."""
    return "raw:" + data.hex()


_TAG_TOKEN = re.compile(rb'"tag"\s*:\s*$')


def retagged(message: RecordedMessage, rewritten: dict[str, Any]) -> bytes | None:
    """The recorded bytes with the envelope's tag swapped, when that is all `rewritten`
    changed and the recorded tag occurs once, right after a `"tag":` key; else None
    (the caller writes the message again). Keeps the bytes as recorded otherwise, and
    saves re-encoding every replayed message."""
    payload = message.payload
    tag, new_tag = message.tag, rewritten.get("tag")
    if payload is None or not isinstance(tag, str) or not isinstance(new_tag, str):
        return None
    if rewritten.keys() != payload.keys() or any(
        rewritten[key] is not value for key, value in payload.items() if key != "tag"
    ):
        return None
    token = json.dumps(tag).encode()
    raw = message.raw
    at = raw.find(token)
    if at < 0 or raw.find(token, at + 1) >= 0 or not _TAG_TOKEN.search(raw[:at]):
        return None
    return raw[:at] + json.dumps(new_tag).encode() + raw[at + len(token) :]
