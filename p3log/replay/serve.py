"""`replay serve`'s trio layer: listen, play the plan to the POS that connects, record.

    serve_replay
    ├── open the store's writer (the run is recorded), read the session through it
    └── listener nursery: serve_channels, one handler per connection
        └── the first connection is the run (later ones are refused while it lasts):
            ├── receiver: POS message -> plan.receive (stamped with trio.current_time())
            ├── sender: sleep until plan.next_deadline(), send what plan.take_due gives
            └── stop watcher (when a `stop` event is given)

The run ends when the POS closes the link, when the recording says the server
closed it (the plan hands out a `Close`), on a divergence in `fail` mode (the link is
closed with code 1008 and the divergence as the reason) or when `stop` is set (1001).
Deadlines are absolute (the sender waits with `trio.move_on_at(deadline)`), so a
slow send delays one message, never every later one.

Every run is recorded into the store as a new session through a `RecordingChannel`
(local sender "server"): first `replay_started` (what it replays, how), then the
connection and every message both ways, each `replay_divergence`, and last
`replay_finished` with the outcome.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Literal

import attrs
import trio

from p3log.net.channel import Channel, ChannelClosed, Transport, serve_channels
from p3log.net.recording import RecordingChannel
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.replay.divergence import Divergence, OnUnexpected
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Close, Pacing, ServePlan
from p3log.replay.recording import RecordedSession, read_session
from p3log.store.log import EventLog

__all__ = [
    "DIVERGED_CLOSE_CODE",
    "SPIN_SECONDS",
    "ServeConfig",
    "ServeResult",
    "play",
    "resolve_transport",
    "serve_replay",
    "wait_for",
]

# WebSocket close codes (RFC 6455) the replayer closes with.
DIVERGED_CLOSE_CODE = 1008  # policy violation: the POS left the script
GOING_AWAY = 1001  # the replay was stopped
TRY_AGAIN_LATER = 1013  # a run is already in progress
CLOSE_GRACE_SECONDS = 2.0
_MAX_REASON_BYTES = 120  # a WebSocket close reason is at most 123 bytes

RunOutcome = Literal["complete", "diverged", "incomplete", "interrupted"]


@attrs.frozen
class ServeConfig:
    """What `p3log replay serve` was asked to do.

    `transport` None: the recorded session's (ws when it is not known). `volatile`
    None: the default volatile paths for the dialect. `dialect` None: PROTOCOL.md's
    default for the link, and the store keeps the dialect it was projected with.
    """

    store: Path
    session: str
    host: str = "127.0.0.1"
    port: int = 0
    transport: Transport | None = None
    pacing: Pacing = attrs.field(factory=Pacing)
    on_unexpected: OnUnexpected = "fail"
    fresh_ids: bool = False
    volatile: VolatilePaths | None = None
    dialect: Dialect | None = None


@attrs.frozen
class ServeResult:
    """How one replay run went; `session_id` is the run's session in the store."""

    session_id: str
    replay_of: str
    outcome: RunOutcome
    divergences: tuple[Divergence, ...]
    pos_matched: int
    pos_recorded: int
    server_sent: int
    server_recorded: int

    @property
    def failure(self) -> str | None:
        """The one line saying why the run failed (`fail` mode), else None."""
        fatal = [d for d in self.divergences if d.action == "fail"]
        return fatal[0].summary() if fatal else None

    def summary(self) -> str:
        skipped = len(self.divergences)
        return (
            f"replayed session {self.replay_of} as {self.session_id}: {self.outcome}; "
            f"{self.pos_matched}/{self.pos_recorded} POS messages matched, "
            f"{self.server_sent}/{self.server_recorded} server messages sent, "
            f"{skipped} divergence{'s' if skipped != 1 else ''}"
        )


async def serve_replay(
    config: ServeConfig,
    *,
    recording: RecordedSession | None = None,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> ServeResult | None:
    """Serve one replay run of `config.session` to the first POS that connects.

    Reports the bound port through `task_status`; returns the run's result, or None
    when `stop` was set before any POS connected. `recording` is the session when the
    caller loaded it already. Raises `ReplayError` (no such session) and `StoreError`
    (no store, or it is busy) before listening.
    """
    dialect = config.dialect or DEFAULT_DIALECT
    # The writer's own connection reads the recording: one DuckDB open, not two.
    with open_log(config.store, create=False, dialect=config.dialect) as log:
        if recording is None:
            recording = read_session(log.index, config.session)
        plan = ServePlan(
            recording,
            pacing=config.pacing,
            on_unexpected=config.on_unexpected,
            volatile=config.volatile or VolatilePaths.default(dialect),
            fresh_ids=config.fresh_ids,
            dialect=dialect,
        )
        transport = resolve_transport(config, recording)
        listener = _Listener(plan, log, stop)
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                serve_channels, listener.handle, config.host, config.port, transport, dialect
            )
            port = await nursery.start(serve)
            task_status.started(port)
            if stop is not None:
                nursery.start_soon(listener.stop_when_idle, nursery.cancel_scope)
            await listener.finished.wait()
            nursery.cancel_scope.cancel()
    return listener.result


def resolve_transport(config: ServeConfig, recording: RecordedSession) -> Transport:
    """The configured transport, else the recorded one, else WebSocket."""
    return config.transport or ("tcp" if recording.transport == "tcp" else "ws")


class _Listener:
    """Hands the first connection the run; refuses the others while it lasts."""

    def __init__(self, plan: ServePlan, log: EventLog, stop: trio.Event | None) -> None:
        self.plan = plan
        self.log = log
        self.stop = stop
        self.started = False
        self.finished = trio.Event()
        self.result: ServeResult | None = None

    async def handle(self, channel: Channel) -> None:
        if self.started:
            await channel.aclose(TRY_AGAIN_LATER, "a replay is already running")
            return
        self.started = True
        try:
            self.result = await play(channel, self.plan, self.log, stop=self.stop)
        finally:
            self.finished.set()

    async def stop_when_idle(self, scope: trio.CancelScope) -> None:
        """On `stop` with no run in progress, stop listening (a run stops on its own)."""
        assert self.stop is not None
        await self.stop.wait()
        if not self.started:
            scope.cancel()


async def play(
    channel: Channel, plan: ServePlan, log: EventLog, *, stop: trio.Event | None = None
) -> ServeResult:
    """Play `plan` over `channel` (one run), recording it into `log`; see the module doc."""
    return await _Run(channel, plan, log).play(stop)


class _Run:
    def __init__(self, channel: Channel, plan: ServePlan, log: EventLog) -> None:
        self.raw_channel = channel
        self.plan = plan
        self.log = log
        self.session_id = f"replay-{uuid.uuid4().hex[:12]}"
        self.kick = trio.Event()  # set whenever the plan may have something new due
        self.close: tuple[int, str] | None = None  # how we close the link, if we do
        self.interrupted = False

    async def play(self, stop: trio.Event | None) -> ServeResult:
        plan = self.plan
        self.log.record_lifecycle(self.session_id, "replay_started", _started(plan))
        channel = RecordingChannel(self.raw_channel, self.log, self.session_id, "server")
        plan.start(trio.current_time())
        outcome: RunOutcome = "interrupted"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, channel, nursery.cancel_scope)
                nursery.start_soon(self._receive_loop, channel, nursery.cancel_scope)
                if stop is not None:
                    nursery.start_soon(self._watch, stop, nursery.cancel_scope)
            if self.close is not None:
                code, reason = self.close
                with trio.move_on_after(CLOSE_GRACE_SECONDS):
                    await channel.aclose(code, _clip(reason))
            outcome = "interrupted" if self.interrupted and not plan.complete else plan.outcome
        finally:
            self.log.record_lifecycle(self.session_id, "replay_finished", _finished(plan, outcome))
        return ServeResult(
            session_id=self.session_id,
            replay_of=plan.session.session_id,
            outcome=outcome,
            divergences=tuple(plan.divergences),
            pos_matched=plan.pos_matched,
            pos_recorded=plan.pos_recorded,
            server_sent=plan.server_sent,
            server_recorded=plan.server_recorded,
        )

    async def _receive_loop(self, channel: Channel, scope: trio.CancelScope) -> None:
        plan = self.plan
        while True:
            try:
                data = await channel.receive()
            except ChannelClosed:
                divergence = plan.pos_closed()
                if divergence is not None:
                    self._record(divergence)
                scope.cancel()
                return
            result = plan.receive(data, trio.current_time())
            if isinstance(result, Divergence):
                self._record(result)
                if plan.failed is not None:
                    self.close = (DIVERGED_CLOSE_CODE, "replay diverged: " + result.summary())
                    scope.cancel()
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
            for outgoing in plan.take_due(trio.current_time()):
                if isinstance(outgoing, Close):
                    self.close = (outgoing.code, outgoing.reason)
                    scope.cancel()
                    return
                try:
                    await channel.send(outgoing.data)
                except ChannelClosed:
                    return  # the receiver sees the close and ends the run

    async def _watch(self, stop: trio.Event, scope: trio.CancelScope) -> None:
        await stop.wait()
        self.interrupted = True
        self.close = (GOING_AWAY, "the replay was stopped")
        scope.cancel()

    def _record(self, divergence: Divergence) -> None:
        self.log.record_lifecycle(self.session_id, "replay_divergence", divergence.details())


#: How long before a deadline the send loops stop sleeping and start polling: the
#: kernel's poll rounds its timeout up to whole milliseconds, which would make every
#: message up to 1 ms late.
SPIN_SECONDS = 0.0015


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


def _started(plan: ServePlan) -> dict[str, object]:
    pacing = plan.pacing
    return {
        "replay_of": plan.session.session_id,
        "mode": "serve",
        "speed": pacing.speed if pacing.mode == "speed" else None,
        "pacing": pacing.mode,
        "on_unexpected": plan.on_unexpected,
        "fresh_ids": plan.renames.fresh_ids,
        "volatile_paths": [str(path) for path in plan.volatile.paths],
    }


def _finished(plan: ServePlan, outcome: RunOutcome) -> dict[str, object]:
    return {
        "outcome": outcome,
        "divergences": len(plan.divergences),
        "pos_matched": plan.pos_matched,
        "pos_recorded": plan.pos_recorded,
        "server_sent": plan.server_sent,
        "server_recorded": plan.server_recorded,
    }


def _clip(reason: str) -> str:
    """A close reason short enough for a WebSocket close frame (UTF-8 safe)."""
    data = reason.encode()
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
