"""The trio pump `replay serve` and `replay drive` share: one run of a sans-IO plan
over an open channel, recorded into the store.

    Run.play
    ├── record `replay_started`, wrap the channel in a `RecordingChannel`
    └── one nursery:
        ├── receiver: peer message -> plan.receive (stamped with trio.current_time())
        ├── sender: wait until plan.next_deadline(), do what plan.take_due gives
        │           (send a message, close the link, or stop at a divergence)
        └── stop watcher (when a `stop` event is given)
    then close the link (as `Run.closing` says) and record `replay_finished`.

The plan (`ServePlan`, `DrivePlan`) decides everything; the side (`serve._ServeRun`,
`drive._DriveRun`) supplies only what differs: the recorded local sender, the close
code after a divergence, what the peer closing means, how the link is closed at the
end, and the lifecycle payloads and result. Deadlines are absolute (`wait_for`), so a
late send delays one message, never the ones after it.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic, Literal, Protocol, TypeVar

import attrs
import trio

from p3log.net.channel import Channel, ChannelClosed
from p3log.net.close_codes import GOING_AWAY
from p3log.net.recording import RecordingChannel
from p3log.replay.divergence import Divergence
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Close, Pacing, Send
from p3log.replay.recording import RecordedSession
from p3log.store.lifecycle import ReplayFinished, ReplayStarted
from p3log.store.log import EventLog

__all__ = [
    "CLOSE_GRACE_SECONDS",
    "SPIN_SECONDS",
    "Plan",
    "Run",
    "RunOutcome",
    "first_failure",
    "new_replay_id",
    "wait_for",
]

CLOSE_GRACE_SECONDS = 2.0

#: How long before a deadline the send loops stop sleeping and start polling: the
#: kernel's poll rounds its timeout up to whole milliseconds, which would make every
#: message up to 1 ms late.
SPIN_SECONDS = 0.0015

RunOutcome = Literal["complete", "diverged", "incomplete", "interrupted"]
PlanOutcome = Literal["complete", "diverged", "incomplete"]
Step = Send | Close | Divergence


class Plan(Protocol):
    """What the pump asks of a plan (`ServePlan`, `DrivePlan`)."""

    @property
    def session(self) -> RecordedSession: ...

    @property
    def pacing(self) -> Pacing: ...

    @property
    def on_unexpected(self) -> str: ...

    @property
    def volatile(self) -> VolatilePaths: ...

    @property
    def divergences(self) -> Sequence[Divergence]: ...

    @property
    def failed(self) -> Divergence | None: ...

    @property
    def complete(self) -> bool: ...

    @property
    def outcome(self) -> PlanOutcome: ...

    def start(self, now: float) -> None: ...

    def receive(self, data: bytes, now: float, stored: bytes | None = None) -> object:
        """What a peer message matched, or the `Divergence`; `stored` is the message as
        the store recorded it (redacted), which is what is compared."""
        ...

    def next_deadline(self) -> float | None: ...

    def take_due(self, now: float) -> Sequence[Step]: ...


PlanT = TypeVar("PlanT", bound=Plan)
ResultT = TypeVar("ResultT")


class Run(ABC, Generic[PlanT, ResultT]):
    """One run of a plan over a channel (see the module doc)."""

    #: The local sender the run is recorded as ("server" or "client").
    local: ClassVar[Literal["client", "server"]]
    #: What `replay_started` calls the run ("serve" or "drive").
    mode: ClassVar[str]
    #: The close code when a divergence stops the run.
    diverged_close_code: ClassVar[int]

    def __init__(self, channel: Channel, plan: PlanT, log: EventLog) -> None:
        self.raw_channel = channel
        self.plan = plan
        self.log = log
        self.session_id = new_replay_id()
        self.kick = trio.Event()  # set whenever the plan may have something new due
        self.close: tuple[int, str] | None = None  # how we close the link, if we do
        self.peer_gone = False
        self.interrupted = False
        self.duration_s = 0.0  # from the run's start to its end, once it is over

    # --- what a side supplies ------------------------------------------------------

    @abstractmethod
    def peer_closed(self, now: float) -> Divergence | None:
        """The peer closed the link at `now`: the plan's divergence, if any."""

    def closing(self) -> tuple[int, str] | None:
        """How to close the link once the run is over (None: leave it)."""
        return self.close

    def started(self) -> ReplayStarted:
        """The `replay_started` event (a side adds its own settings)."""
        plan = self.plan
        pacing = plan.pacing
        return ReplayStarted(
            replay_of=plan.session.session_id,
            mode=self.mode,
            speed=pacing.speed if pacing.mode == "speed" else None,
            pacing=pacing.mode,
            on_unexpected=plan.on_unexpected,
            volatile_paths=tuple(str(path) for path in plan.volatile.paths),
        )

    @abstractmethod
    def counts(self) -> ReplayFinished:
        """The message counts `replay_finished` records with the outcome."""

    @abstractmethod
    def result(self, outcome: RunOutcome) -> ResultT:
        """The run's result."""

    # --- the pump --------------------------------------------------------------------

    async def play(self, stop: trio.Event | None) -> ResultT:
        plan = self.plan
        self.log.record_lifecycle(self.session_id, self.started())
        channel = RecordingChannel(self.raw_channel, self.log, self.session_id, self.local)
        began = trio.current_time()
        plan.start(began)
        outcome: RunOutcome = "interrupted"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, channel, nursery.cancel_scope)
                nursery.start_soon(self._receive_loop, channel, nursery.cancel_scope)
                if stop is not None:
                    nursery.start_soon(self._watch, stop, nursery.cancel_scope)
            closing = self.closing()
            if closing is not None:
                code, reason = closing
                with trio.move_on_after(CLOSE_GRACE_SECONDS):
                    await channel.aclose(code, reason)
            outcome = "interrupted" if self.interrupted and not plan.complete else plan.outcome
        finally:
            finished = attrs.evolve(
                self.counts(), outcome=outcome, divergences=len(plan.divergences)
            )
            self.log.record_lifecycle(self.session_id, finished)
            self.duration_s = trio.current_time() - began
        return self.result(outcome)

    async def _receive_loop(self, channel: RecordingChannel, scope: trio.CancelScope) -> None:
        plan = self.plan
        while True:
            try:
                # The plan compares the message as the store recorded it: redacted by
                # the same code, key and policy as the recording, so a card number or a
                # secret matches its recorded (masked, fingerprinted) original.
                data, stored = await channel.receive_stored()
            except ChannelClosed:
                self.peer_gone = True
                divergence = self.peer_closed(trio.current_time())
                if divergence is not None:
                    self._record(divergence)
                scope.cancel()
                return
            result = plan.receive(data, trio.current_time(), stored)
            if isinstance(result, Divergence):
                self._record(result)
                if plan.failed is not None:
                    self._stop_at(result, scope)
                    return
            self.kick.set()

    async def _send_loop(self, channel: Channel, scope: trio.CancelScope) -> None:
        plan = self.plan
        while True:
            # A fresh event before asking the plan: whatever changes it from here on
            # sets this one, so no wake-up is lost.
            self.kick = trio.Event()
            deadline = plan.next_deadline()
            if deadline is None or deadline > trio.current_time():
                await wait_for(self.kick, deadline)
                continue
            for step in plan.take_due(trio.current_time()):
                if isinstance(step, Divergence):  # the plan gives up (drive: a late server)
                    self._record(step)
                    self._stop_at(step, scope)
                    return
                if isinstance(step, Close):
                    self.close = (step.code, step.reason)
                    scope.cancel()
                    return
                try:
                    await channel.send(step.data)
                except ChannelClosed:
                    return  # the receiver sees the close and ends the run

    async def _watch(self, stop: trio.Event, scope: trio.CancelScope) -> None:
        await stop.wait()
        self.interrupted = True
        self.close = (GOING_AWAY, "the replay was stopped")
        scope.cancel()

    def _stop_at(self, divergence: Divergence, scope: trio.CancelScope) -> None:
        self.close = (self.diverged_close_code, "replay diverged: " + divergence.summary())
        scope.cancel()

    def _record(self, divergence: Divergence) -> None:
        self.log.record_lifecycle(self.session_id, divergence.details())


def new_replay_id() -> str:
    """A new session id for something a replay records (`replay-` and 12 hex digits)."""
    return f"replay-{uuid.uuid4().hex[:12]}"


async def wait_for(event: trio.Event, deadline: float | None) -> None:
    """Return when `event` is set or at `deadline` (None: no deadline), whichever comes
    first; a deadline is met to within scheduling noise, not the poll's 1 ms rounding:
    the last `SPIN_SECONDS` are spent in checkpoints (other tasks run meanwhile)."""
    if deadline is None:
        await event.wait()
        return
    with trio.move_on_at(deadline - SPIN_SECONDS):
        await event.wait()
        return
    while not event.is_set() and trio.current_time() < deadline:
        await trio.lowlevel.checkpoint()


def first_failure(divergences: Sequence[Divergence]) -> str | None:
    """The one line saying why a run stopped at a divergence, else None."""
    fatal = [d for d in divergences if d.action == "fail"]
    return fatal[0].summary() if fatal else None
