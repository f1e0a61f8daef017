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
(1001). The run itself is `pump.Run`'s, shared with `replay serve`; this side supplies
the close codes, what the server closing means, and what is recorded.

Every run is recorded into the store as a new session through a `RecordingChannel`
(local sender "client"): `replay_started` (what it replays, against what, how),
then the connection and every message both ways (the merchant secret redacted on
the way in, as anywhere), each `replay_divergence`, and last `replay_finished`.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import trio

from p3log.net.channel import Channel, open_channel
from p3log.net.close_codes import NORMAL_CLOSURE
from p3log.net.failures import describe_connect_failure
from p3log.pos.runner import DEFAULT_SECRET_ENV
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.replay.divergence import Divergence
from p3log.replay.drive_plan import DEFAULT_TIMEOUT, DriveOnUnexpected, DrivePlan
from p3log.replay.incident import SessionSelection
from p3log.replay.junit import ReplayCase, failure_of
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Pacing
from p3log.replay.pump import Run, RunOutcome, first_failure
from p3log.replay.recording import RecordedSession, ReplayError, read_session
from p3log.replay.redaction import check_reproducible
from p3log.store.lifecycle import ReplayFinished, ReplayStarted
from p3log.store.log import EventLog
from p3log.wording import counted

__all__ = ["ConnectError", "DriveConfig", "DriveResult", "dial", "drive", "drive_replay"]

DEFAULT_CONNECT_TIMEOUT = 10.0


class ConnectError(ReplayError):
    """The target could not be reached; nothing was recorded."""


@attrs.frozen
class DriveConfig:
    """What `p3log replay drive` was asked to do.

    `secret` replaces the recorded login's redacted merchant secret (required when the
    session logs in). `volatile` None: `VolatilePaths.between_runs` for the dialect.
    `timeout`: seconds the server may be later than recorded. `dialect` None:
    docs/protocol.md's default.
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
    selection: SessionSelection | None = None

    @property
    def selected(self) -> SessionSelection:
        """The sessions to drive: `selection`, else the one `session`."""
        return self.selection or SessionSelection((self.session,))

    def plan(self, recording: RecordedSession, dialect: Dialect) -> DrivePlan:
        """The drive plan of one recorded connection under these settings."""
        return DrivePlan(
            recording,
            pacing=self.pacing,
            on_unexpected=self.on_unexpected,
            volatile=self.volatile or VolatilePaths.between_runs(dialect),
            timeout=self.timeout,
            secret=self.secret,
            dialect=dialect,
        )


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
    duration_s: float = 0.0  # the run, from its start to its end

    @property
    def reproduced(self) -> bool:
        """The run went as recorded: complete, and no divergence on the way."""
        return self.outcome == "complete" and not self.divergences

    @property
    def failure(self) -> str | None:
        """The one line saying why the run stopped at a divergence, else None."""
        return first_failure(self.divergences)

    def connection(self) -> ReplayCase:
        """This run as one connection of a report (`junit.py`)."""
        counts = (
            ("pos_sent", self.pos_sent),
            ("pos_recorded", self.pos_recorded),
            ("server_matched", self.server_matched),
            ("server_recorded", self.server_recorded),
            ("divergences", len(self.divergences)),
        )
        return ReplayCase(
            mode="drive",
            replay_of=self.replay_of,
            session_id=self.session_id,
            outcome=self.outcome,
            divergences=self.divergences,
            failure=failure_of("drive", self.outcome, self.divergences),
            duration_s=self.duration_s,
            properties=(
                ("replay_session", self.session_id),
                ("target", self.target),
                ("outcome", self.outcome),
                ("duration_s", f"{self.duration_s:.6f}"),
                *((name, str(value)) for name, value in counts),
            ),
        )

    def summary(self) -> str:
        count = len(self.divergences)
        return (
            f"drove session {self.replay_of} against {self.target} as {self.session_id}: "
            f"{self.outcome}; {self.pos_sent}/{self.pos_recorded} POS messages sent, "
            f"{self.server_matched}/{self.server_recorded} server messages matched, "
            f"{counted(count, 'divergence')}"
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
        plan = config.plan(recording, dialect)
        check_reproducible(log.index, log.meta, recording, "server", plan.volatile)
        async with AsyncExitStack() as stack:
            channel = await dial(stack, config, dialect)
            return await drive(channel, plan, log, config.target, stop=stop)


async def dial(stack: AsyncExitStack, config: DriveConfig, dialect: Dialect) -> Channel:
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
    except* Exception as group:  # refused, TLS, trio-websocket's handshake errors, ...
        problem = f"cannot connect to {config.target}: {describe_connect_failure(_first(group))}"
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
    return await _DriveRun(channel, plan, log, target).play(stop)


class _DriveRun(Run[DrivePlan, DriveResult]):
    """The pump's drive side: the server closing is its plan's business (early or
    not); unless the server closed it, the link is closed at the end, normally when
    nothing else says how."""

    local = "client"
    mode = "drive"
    diverged_close_code = NORMAL_CLOSURE

    def __init__(self, channel: Channel, plan: DrivePlan, log: EventLog, target: str) -> None:
        super().__init__(channel, plan, log)
        self.target = target

    def peer_closed(self, now: float) -> Divergence | None:
        return self.plan.server_closed(now)

    def closing(self) -> tuple[int, str] | None:
        return None if self.peer_gone else self.close or (NORMAL_CLOSURE, "")

    def started(self) -> ReplayStarted:
        return attrs.evolve(super().started(), target=self.target, timeout=self.plan.timeout)

    def counts(self) -> ReplayFinished:
        plan = self.plan
        return ReplayFinished(
            pos_sent=plan.pos_sent,
            pos_recorded=plan.pos_recorded,
            server_matched=plan.server_matched,
            server_recorded=plan.server_recorded,
        )

    def result(self, outcome: RunOutcome) -> DriveResult:
        plan = self.plan
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
            duration_s=self.duration_s,
        )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
