"""`replay drive`'s trio layer: dial the server, play the plan's POS side, record.

    drive_replay
    ├── open the store's writer (the run is recorded), read the session through it
    ├── dial the target (ws://, wss:// or tcp://); nothing is recorded if that fails
    └── the run, in one nursery:
        ├── receiver: server message -> plan.receive (stamped with trio.current_time())
        ├── sender: wait until plan.next_deadline(), do what plan.take_due gives
        │           (send a POS message, close the link, or give up on a late server)
        └── stop watcher (when a `stop` event is given)

The run ends when the plan says the recording's POS closed the link (we close it
the same way), when the server closes it, on a divergence that stops the run (the
link is closed with 1000 and the divergence as the reason) or when `stop` is set
(1001). Deadlines are absolute (`trio.move_on_at`), so a late send delays one
message, never the ones after it.

Every run is recorded into the store as a new session through a `RecordingChannel`
(local sender "client"): `replay_started` (what it replays, against what, how),
then the connection and every message both ways (the merchant secret redacted on
the way in, as anywhere), each `replay_divergence`, and last `replay_finished`.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

import attrs
import trio

from p3log.net.channel import Channel, ChannelClosed, open_channel
from p3log.net.recording import RecordingChannel
from p3log.pos.runner import DEFAULT_SECRET_ENV
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.replay.divergence import Divergence
from p3log.replay.drive_plan import DEFAULT_TIMEOUT, DriveOnUnexpected, DrivePlan
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Close, Pacing
from p3log.replay.recording import RecordedSession, ReplayError, read_session
from p3log.replay.serve import wait_for
from p3log.store.log import EventLog

__all__ = ["ConnectError", "DriveConfig", "DriveResult", "drive", "drive_replay"]

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001  # the replay was stopped
CLOSE_GRACE_SECONDS = 2.0
DEFAULT_CONNECT_TIMEOUT = 10.0
_MAX_REASON_BYTES = 120  # a WebSocket close reason is at most 123 bytes

RunOutcome = Literal["complete", "diverged", "incomplete", "interrupted"]


class ConnectError(ReplayError):
    """The target could not be reached; nothing was recorded."""


@attrs.frozen
class DriveConfig:
    """What `p3log replay drive` was asked to do.

    `secret` replaces the recorded login's redacted merchant secret (required when the
    session logs in). `volatile` None: `VolatilePaths.between_runs` for the dialect.
    `timeout`: seconds the server may be later than recorded. `dialect` None:
    PROTOCOL.md's default.
    """

    store: Path
    session: str
    target: str
    secret: str | None = attrs.field(default=None, repr=False)
    secret_env: str = DEFAULT_SECRET_ENV  # where the secret came from, for messages
    pacing: Pacing = attrs.field(factory=Pacing)
    on_unexpected: DriveOnUnexpected = "fail"
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    volatile: VolatilePaths | None = None
    dialect: Dialect | None = None


@attrs.frozen
class DriveResult:
    """How one drive run went; `session_id` is the run's session in the store."""

    session_id: str
    replay_of: str
    target: str
    outcome: RunOutcome
    divergences: tuple[Divergence, ...]
    pos_sent: int
    pos_recorded: int
    server_matched: int
    server_recorded: int

    @property
    def reproduced(self) -> bool:
        """The run went as recorded: complete, and no divergence on the way."""
        return self.outcome == "complete" and not self.divergences

    @property
    def failure(self) -> str | None:
        """The one line saying why the run stopped at a divergence, else None."""
        fatal = [d for d in self.divergences if d.action == "fail"]
        return fatal[0].summary() if fatal else None

    def summary(self) -> str:
        count = len(self.divergences)
        return (
            f"drove session {self.replay_of} against {self.target} as {self.session_id}: "
            f"{self.outcome}; {self.pos_sent}/{self.pos_recorded} POS messages sent, "
            f"{self.server_matched}/{self.server_recorded} server messages matched, "
            f"{count} divergence{'s' if count != 1 else ''}"
        )


async def drive_replay(
    config: DriveConfig,
    *,
    recording: RecordedSession | None = None,
    stop: trio.Event | None = None,
) -> DriveResult:
    """Drive one replay run of `config.session` against `config.target`.

    `recording` is the session when the caller loaded it already. Raises
    `ReplayError` (no such session, no secret for its login), `ConnectError` (the
    target cannot be reached) and `StoreError` (no store, or it is busy) before
    anything is recorded.
    """
    dialect = config.dialect or DEFAULT_DIALECT
    with open_log(config.store, create=False, dialect=config.dialect) as log:
        if recording is None:
            recording = read_session(log.index, config.session)
        plan = DrivePlan(
            recording,
            pacing=config.pacing,
            on_unexpected=config.on_unexpected,
            volatile=config.volatile or VolatilePaths.between_runs(dialect),
            timeout=config.timeout,
            secret=config.secret,
            dialect=dialect,
        )
        async with AsyncExitStack() as stack:
            channel = await _dial(stack, config, dialect)
            return await drive(channel, plan, log, config.target, stop=stop)


async def _dial(stack: AsyncExitStack, config: DriveConfig, dialect: Dialect) -> Channel:
    """The open link to the target, or `ConnectError` (one line)."""
    problem: str | None = None
    try:
        return await stack.enter_async_context(
            open_channel(config.target, dialect, connect_timeout=config.connect_timeout)
        )
    except* ValueError as group:
        problem = str(_first(group))
    except* trio.TooSlowError:
        problem = f"{config.target}: no connection within {config.connect_timeout:g} s"
    except* OSError as group:
        first = _first(group)
        reason = first.strerror if isinstance(first, OSError) and first.strerror else first
        problem = f"cannot connect to {config.target}: {reason}"
    except* Exception as group:  # trio-websocket's handshake errors, among others
        problem = f"cannot connect to {config.target}: {_first(group)!r}"
    raise ConnectError(problem)


async def drive(
    channel: Channel,
    plan: DrivePlan,
    log: EventLog,
    target: str,
    *,
    stop: trio.Event | None = None,
) -> DriveResult:
    """Play `plan` over `channel` (one run), recording it into `log`; see the module doc."""
    return await _Run(channel, plan, log, target).play(stop)


class _Run:
    def __init__(self, channel: Channel, plan: DrivePlan, log: EventLog, target: str) -> None:
        self.raw_channel = channel
        self.plan = plan
        self.log = log
        self.target = target
        self.session_id = f"replay-{uuid.uuid4().hex[:12]}"
        self.kick = trio.Event()  # set whenever the plan may have something new due
        self.close: tuple[int, str] | None = None  # how we close the link, if we do
        self.server_gone = False
        self.interrupted = False

    async def play(self, stop: trio.Event | None) -> DriveResult:
        plan = self.plan
        self.log.record_lifecycle(self.session_id, "replay_started", self._started())
        channel = RecordingChannel(self.raw_channel, self.log, self.session_id, "client")
        plan.start(trio.current_time())
        outcome: RunOutcome = "interrupted"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, channel, nursery.cancel_scope)
                nursery.start_soon(self._receive_loop, channel, nursery.cancel_scope)
                if stop is not None:
                    nursery.start_soon(self._watch, stop, nursery.cancel_scope)
            if not self.server_gone:
                code, reason = self.close or (NORMAL_CLOSURE, "")
                with trio.move_on_after(CLOSE_GRACE_SECONDS):
                    await channel.aclose(code, _clip(reason))
            outcome = "interrupted" if self.interrupted and not plan.complete else plan.outcome
        finally:
            self.log.record_lifecycle(self.session_id, "replay_finished", _finished(plan, outcome))
        return DriveResult(
            session_id=self.session_id,
            replay_of=plan.session.session_id,
            target=self.target,
            outcome=outcome,
            divergences=tuple(plan.divergences),
            pos_sent=plan.pos_sent,
            pos_recorded=plan.pos_recorded,
            server_matched=plan.server_matched,
            server_recorded=plan.server_recorded,
        )

    async def _receive_loop(self, channel: Channel, scope: trio.CancelScope) -> None:
        plan = self.plan
        while True:
            try:
                data = await channel.receive()
            except ChannelClosed:
                self.server_gone = True
                divergence = plan.server_closed(trio.current_time())
                if divergence is not None:
                    self._record(divergence)
                scope.cancel()
                return
            result = plan.receive(data, trio.current_time())
            if isinstance(result, Divergence):
                self._record(result)
                if plan.failed is not None:
                    self.close = (NORMAL_CLOSURE, "replay diverged: " + result.summary())
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
            for step in plan.take_due(trio.current_time()):
                if isinstance(step, Divergence):  # the server is too late: give up
                    self._record(step)
                    self.close = (NORMAL_CLOSURE, "replay diverged: " + step.summary())
                    scope.cancel()
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

    def _record(self, divergence: Divergence) -> None:
        self.log.record_lifecycle(self.session_id, "replay_divergence", divergence.details())

    def _started(self) -> dict[str, object]:
        plan = self.plan
        pacing = plan.pacing
        return {
            "replay_of": plan.session.session_id,
            "mode": "drive",
            "speed": pacing.speed if pacing.mode == "speed" else None,
            "pacing": pacing.mode,
            "target": self.target,
            "on_unexpected": plan.on_unexpected,
            "timeout": plan.timeout,
            "volatile_paths": [str(path) for path in plan.volatile.paths],
        }


def _finished(plan: DrivePlan, outcome: RunOutcome) -> dict[str, object]:
    return {
        "outcome": outcome,
        "divergences": len(plan.divergences),
        "pos_sent": plan.pos_sent,
        "pos_recorded": plan.pos_recorded,
        "server_matched": plan.server_matched,
        "server_recorded": plan.server_recorded,
    }


def _clip(reason: str) -> str:
    """A close reason short enough for a WebSocket close frame (UTF-8 safe)."""
    data = reason.encode()
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
