"""One tapped connection: two pumps, POS -> server and server -> POS.

Each pump reads a message, stamps it, records it and forwards it, in the order the
durability mode asks for: in journal and async mode one message at a time; in fsync
mode in groups (a reader records each message as it arrives while the forwarder
waits for one fsync covering everything read so far, then forwards it all in order).
When either side closes, the close (who, code, reason) is recorded once and carried
to the other side, after every message read before it; the relay then ends.
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
from p3log.tap.backlog import Backlog
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
class _Recorded:
    """A message read in fsync mode and recorded, waiting to be forwarded."""

    message: WireMessage
    seq: int | None  # None: the journal could not be written (the gap counts it)


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
            if self._recording.group_sync is None:
                await self._relay_each(source, target, sender, first)
            else:
                await self._relay_in_groups(source, target, sender, first)
        except ChannelClosed as closed:
            await self._end(sender, closed.code, closed.reason)
        except _TargetGone as gone:
            await self._end(_OTHER[sender], gone.closed.code, gone.closed.reason)
        nursery.cancel_scope.cancel()

    async def _relay_each(
        self, source: Link, target: Link, sender: Sender, first: Arrival | None
    ) -> None:
        """journal and async modes: read, record and forward one message at a time."""
        if first is not None:
            await self._pass_on(first.message, sender, target, first.stamp)
        while True:
            message = await source.receive()
            await self._pass_on(message, sender, target, Stamp.now())

    async def _pass_on(
        self, message: WireMessage, sender: Sender, target: Link, stamp: Stamp
    ) -> None:
        recording = self._recording
        if recording.durability is Durability.async_:
            await self._forward(message, target, sender)
            self._record(message, sender, stamp)
        else:
            self._record(message, sender, stamp)
            await self._forward(message, target, sender)

    async def _relay_in_groups(
        self, source: Link, target: Link, sender: Sender, first: Arrival | None
    ) -> None:
        """fsync mode: while the forwarder waits for an fsync, the reader goes on reading
        and recording, so the next fsync covers everything read meanwhile. Raises what
        ends the direction (`ChannelClosed`, `_TargetGone`) once the reader has stopped."""
        backlog: Backlog[_Recorded | ChannelClosed] = Backlog()
        ending: ChannelClosed | _TargetGone | None = None
        async with trio.open_nursery() as reading:
            reading.start_soon(self._read_ahead, source, sender, first, backlog)
            try:
                while True:
                    await self._forward_group(await backlog.take_all(), target, sender)
            except (ChannelClosed, _TargetGone) as exc:
                ending = exc
            reading.cancel_scope.cancel()
        assert ending is not None
        if isinstance(ending, _TargetGone):  # read and recorded after the failed one
            self._note_forward_failed(backlog.take_now(), sender, ending.closed)
        raise ending

    async def _read_ahead(
        self,
        source: Link,
        sender: Sender,
        first: Arrival | None,
        backlog: Backlog[_Recorded | ChannelClosed],
    ) -> None:
        """Record each message as it arrives and queue it; the close comes last."""
        arrival = first
        try:
            while True:
                await backlog.wait_for_room()
                if arrival is None:
                    arrival = Arrival(await source.receive(), Stamp.now())
                # No checkpoint from here to the queue: a message read is recorded and
                # queued, or (cancelled while waiting above) not read at all.
                seq = self._record(arrival.message, sender, arrival.stamp)
                backlog.put(_Recorded(arrival.message, seq), len(arrival.message.data))
                arrival = None
        except ChannelClosed as closed:
            backlog.put(closed, 0)

    async def _forward_group(
        self, group: list[_Recorded | ChannelClosed], target: Link, sender: Sender
    ) -> None:
        """Wait for one fsync covering the group, then forward it in order; a close in
        it (always last) is raised once the messages before it are forwarded."""
        group_sync = self._recording.group_sync
        assert group_sync is not None
        seqs = [item.seq for item in group if isinstance(item, _Recorded) and item.seq is not None]
        if seqs:
            await group_sync.wait_synced(max(seqs))
        for n, item in enumerate(group):
            if isinstance(item, ChannelClosed):
                raise item
            try:
                await self._forward(item.message, target, sender)
            except _TargetGone as gone:
                self._note_forward_failed(group[n + 1 :], sender, gone.closed)
                raise

    def _note_forward_failed(
        self, items: list[_Recorded | ChannelClosed], sender: Sender, closed: ChannelClosed
    ) -> None:
        """One `forward_failed` for each message recorded that will not be forwarded."""
        for item in items:
            if isinstance(item, _Recorded):
                self._recording.note(
                    self._session_id,
                    ForwardFailed(sender=sender, code=closed.code, reason=closed.reason),
                )

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
