"""One tapped connection: two pumps, POS -> server and server -> POS.

Each pump reads a message, stamps it, records it and forwards it, in the order the
durability mode asks for. When either side closes, the close (who, code, reason) is
recorded once and carried to the other side; the relay then ends.
"""

from __future__ import annotations

import contextlib
import logging

import attrs
import trio

from p3log.net.channel import ChannelClosed
from p3log.net.close_codes import GOING_AWAY, MESSAGE_TOO_BIG
from p3log.store.event import Sender, Stamp
from p3log.store.lifecycle import (
    ConnectionClosed,
    ForwardFailed,
    FrameTooLarge,
    Lifecycle,
    RecordingGap,
)
from p3log.store.log import EventLog
from p3log.tap.durability import Durability, GroupSync
from p3log.tap.links import Link, WireMessage

logger = logging.getLogger("p3log")

_OTHER: dict[Sender, Sender] = {"client": "server", "server": "client"}


@attrs.define
class _Gap:
    """Messages forwarded while the journal could not be written."""

    since_us: int
    error: str
    missed: dict[Sender, int] = attrs.field(factory=lambda: {"client": 0, "server": 0})

    def details(self) -> RecordingGap:
        missed = {str(sender): count for sender, count in self.missed.items()}
        return RecordingGap(since_us=self.since_us, error=self.error, missed=missed)


class _TargetGone(Exception):
    """Forwarding failed because the receiving side has closed."""

    def __init__(self, closed: ChannelClosed) -> None:
        self.closed = closed


@attrs.frozen
class Recording:
    """What every relay shares: where events go and how safe they must be first."""

    log: EventLog
    durability: Durability
    group_sync: GroupSync | None = None

    def note(self, session_id: str, event: Lifecycle) -> None:
        """Record a lifecycle event; a journal that cannot be written must not stop
        the payment, so that failure is only logged."""
        try:
            self.log.record_lifecycle(session_id, event)
        except OSError as exc:
            logger.error("cannot record %s (%s)", event.kind, exc.strerror or exc)

    def note_unforwarded(self, session_id: str, sender: Sender, arrival: Arrival) -> None:
        """Record a message that arrived but has nowhere to go (its upstream failed)."""
        try:
            self.log.record_message(session_id, sender, arrival.message.data, arrival.stamp)
        except OSError as exc:
            logger.error("cannot record a message (%s)", exc.strerror or exc)

    def note_closed(self, session_id: str, by: str, code: int | None, reason: str) -> None:
        """Record how a connection ended (and a frame over the size limit, if that
        was why)."""
        if code == MESSAGE_TOO_BIG:
            self.log.record_lifecycle(session_id, FrameTooLarge(sender=by, reason=reason))
        self.log.record_lifecycle(session_id, ConnectionClosed(by=by, code=code, reason=reason))


@attrs.frozen
class Arrival:
    """A message read from a peer, and when."""

    message: WireMessage
    stamp: Stamp


class Relay:
    def __init__(
        self,
        recording: Recording,
        session_id: str,
        pos: Link,
        upstream: Link,
        first: Arrival | None = None,
    ) -> None:
        """`first`: a message the POS sent before the upstream was dialed (framed TCP),
        recorded and forwarded before any other."""
        self._recording = recording
        self._session_id = session_id
        self._pos = pos
        self._upstream = upstream
        self._first = first
        self._ended = False
        self._gap: _Gap | None = None

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    self._pump, self._pos, self._upstream, "client", nursery, self._first
                )
                nursery.start_soon(self._pump, self._upstream, self._pos, "server", nursery)
        finally:
            if not self._ended:  # cancelled from outside: the tap is shutting down
                with trio.CancelScope(shield=True):
                    await self._end("tap", GOING_AWAY, "p3log tap shutting down")

    async def _pump(
        self,
        source: Link,
        target: Link,
        sender: Sender,
        nursery: trio.Nursery,
        first: Arrival | None = None,
    ) -> None:
        try:
            if first is not None:
                await self._pass_on(first.message, sender, target, first.stamp)
            while True:
                message = await source.receive()
                await self._pass_on(message, sender, target, Stamp.now())
        except ChannelClosed as closed:
            await self._end(sender, closed.code, closed.reason)
        except _TargetGone as gone:
            await self._end(_OTHER[sender], gone.closed.code, gone.closed.reason)
        nursery.cancel_scope.cancel()

    async def _pass_on(
        self, message: WireMessage, sender: Sender, target: Link, stamp: Stamp
    ) -> None:
        recording = self._recording
        if recording.durability is Durability.async_:
            await self._forward(message, target, sender)
            self._record(message, sender, stamp)
        else:
            seq = self._record(message, sender, stamp)
            if recording.group_sync is not None and seq is not None:
                await recording.group_sync.wait_synced(seq)
            await self._forward(message, target, sender)

    def _record(self, message: WireMessage, sender: Sender, stamp: Stamp) -> int | None:
        """Record a message; if the journal cannot be written, the payment still goes
        through: the message is counted, and the gap is recorded once writing works."""
        log = self._recording.log
        try:
            event = log.record_message(self._session_id, sender, message.data, stamp)
        except OSError as exc:
            if self._gap is None:
                logger.error(
                    "cannot write the journal (%s); forwarding unrecorded until it can",
                    exc.strerror or exc,
                )
                self._gap = _Gap(since_us=stamp.recorded_at_us, error=str(exc.strerror or exc))
            self._gap.missed[sender] += 1
            return None
        if self._gap is not None:
            gap, self._gap = self._gap, None
            self._recording.note(self._session_id, gap.details())
        return event.seq

    async def _forward(self, message: WireMessage, target: Link, sender: Sender) -> None:
        try:
            await target.send(message)
        except ChannelClosed as closed:
            # This message is recorded but never reached the other side: say so.
            self._recording.note(
                self._session_id,
                ForwardFailed(sender=sender, code=closed.code, reason=closed.reason),
            )
            raise _TargetGone(closed) from None

    async def _end(self, by: str, code: int | None, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._recording.note_closed(self._session_id, by, code, reason)
        for link in (self._pos, self._upstream):
            with trio.move_on_after(2):  # a peer that will not finish the close handshake
                with contextlib.suppress(
                    ChannelClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError
                ):
                    await link.close(code, reason or "peer closed the connection")
