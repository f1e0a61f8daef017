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
The run itself is `pump.Run`'s, shared with `replay drive`; this side supplies the
close codes, what the POS closing means, and what is recorded.

Every run is recorded into the store as a new session through a `RecordingChannel`
(local sender "server"): first `replay_started` (what it replays, how), then the
connection and every message both ways, each `replay_divergence`, and last
`replay_finished` with the outcome.
"""

from __future__ import annotations

import functools
from pathlib import Path

import attrs
import trio

from p3log.net.channel import Channel, Transport, serve_channels
from p3log.net.close_codes import POLICY_VIOLATION, TRY_AGAIN_LATER
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.replay.divergence import Divergence, OnUnexpected
from p3log.replay.junit import ReplayCase, failure_of
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Pacing, ServePlan
from p3log.replay.pump import Run, RunOutcome, first_failure
from p3log.replay.recording import RecordedSession, read_session
from p3log.replay.redaction import check_reproducible
from p3log.store.lifecycle import ReplayFinished, ReplayStarted
from p3log.store.log import EventLog
from p3log.wording import counted

__all__ = [
    "ServeConfig",
    "ServeResult",
    "play",
    "resolve_transport",
    "serve_replay",
]


@attrs.frozen
class ServeConfig:
    """What `p3log replay serve` was asked to do.

    `transport` None: the recorded session's (ws when it is not known). `volatile`
    None: the default volatile paths for the dialect. `dialect` None: docs/protocol.md's
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
    duration_s: float = 0.0  # the run, from its start to its end

    @property
    def failure(self) -> str | None:
        """The one line saying why the run failed (`fail` mode), else None."""
        return first_failure(self.divergences)

    def connection(self) -> ReplayCase:
        """This run as one connection of a report (`junit.py`)."""
        counts = (
            ("pos_matched", self.pos_matched),
            ("pos_recorded", self.pos_recorded),
            ("server_sent", self.server_sent),
            ("server_recorded", self.server_recorded),
            ("divergences", len(self.divergences)),
        )
        return ReplayCase(
            mode="serve",
            replay_of=self.replay_of,
            session_id=self.session_id,
            outcome=self.outcome,
            divergences=self.divergences,
            failure=failure_of("serve", self.outcome, self.divergences),
            duration_s=self.duration_s,
            properties=(
                ("replay_session", self.session_id),
                ("outcome", self.outcome),
                ("duration_s", f"{self.duration_s:.6f}"),
                *((name, str(value)) for name, value in counts),
            ),
        )

    def summary(self) -> str:
        skipped = len(self.divergences)
        return (
            f"replayed session {self.replay_of} as {self.session_id}: {self.outcome}; "
            f"{self.pos_matched}/{self.pos_recorded} POS messages matched, "
            f"{self.server_sent}/{self.server_recorded} server messages sent, "
            f"{counted(skipped, 'divergence')}"
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
        check_reproducible(log.index, log.meta, recording, "client", plan.volatile)
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
    return await _ServeRun(channel, plan, log).play(stop)


class _ServeRun(Run[ServePlan, ServeResult]):
    """The pump's serve side: a POS closing early is its plan's divergence; the link
    is closed only when the recording, a divergence or `stop` says so."""

    local = "server"
    mode = "serve"
    diverged_close_code = POLICY_VIOLATION

    def peer_closed(self, now: float) -> Divergence | None:
        return self.plan.pos_closed()

    def started(self) -> ReplayStarted:
        return attrs.evolve(super().started(), fresh_ids=self.plan.renames.fresh_ids)

    def counts(self) -> ReplayFinished:
        plan = self.plan
        return ReplayFinished(
            pos_matched=plan.pos_matched,
            pos_recorded=plan.pos_recorded,
            server_sent=plan.server_sent,
            server_recorded=plan.server_recorded,
        )

    def result(self, outcome: RunOutcome) -> ServeResult:
        plan = self.plan
        return ServeResult(
            session_id=self.session_id,
            replay_of=plan.session.session_id,
            outcome=outcome,
            divergences=tuple(plan.divergences),
            pos_matched=plan.pos_matched,
            pos_recorded=plan.pos_recorded,
            server_sent=plan.server_sent,
            server_recorded=plan.server_recorded,
            duration_s=self.duration_s,
        )
