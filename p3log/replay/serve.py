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
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from p3log.net.channel import Channel, ChannelClosed, Transport, serve_channels
from p3log.net.close_codes import NORMAL_CLOSURE, POLICY_VIOLATION, TRY_AGAIN_LATER
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.replay.divergence import Divergence, OnUnexpected
from p3log.replay.incident import Incident, SessionSelection, assign, read_incident
from p3log.replay.junit import ReplayCase, failure_of
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Pacing, ServePlan
from p3log.replay.pump import CLOSE_GRACE_SECONDS, Run, RunOutcome, first_failure
from p3log.replay.recording import RecordedSession
from p3log.replay.redaction import check_reproducible
from p3log.replay.results import ConnectionResult, IncidentResult
from p3log.store.lifecycle import ReplayFinished, ReplayStarted
from p3log.store.log import EventLog
from p3log.wording import counted

__all__ = [
    "ServeConfig",
    "ServeResult",
    "play",
    "resolve_transport",
    "serve_incident",
    "serve_replay",
]


@attrs.frozen
class ServeConfig:
    """What `p3log replay serve` was asked to do.

    `session` names one session; `selection` (when given) the incident's sessions
    instead. `transport` None: the recorded session's (ws when it is not known). `volatile`
    None: the default volatile paths for the dialect. `dialect` None: docs/protocol.md's
    default for the link, and the store keeps the dialect it was projected with.
    """

    store: Path
    session: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    transport: Transport | None = None
    pacing: Pacing = attrs.field(factory=Pacing)
    on_unexpected: OnUnexpected = "fail"
    fresh_ids: bool = False
    volatile: VolatilePaths | None = None
    dialect: Dialect | None = None
    selection: SessionSelection | None = None

    @property
    def selected(self) -> SessionSelection:
        """The sessions to serve: `selection`, else the one `session`."""
        return self.selection or SessionSelection((self.session,))


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
    incident = Incident.of(recording) if recording is not None else None
    config = attrs.evolve(config, selection=SessionSelection((config.session,)))
    found = await serve_incident(config, incident=incident, stop=stop, task_status=task_status)
    return found.connections[0].run if found.started else None  # type: ignore[return-value]


async def serve_incident(
    config: ServeConfig,
    *,
    incident: Incident | None = None,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> IncidentResult:
    """Serve every connection of the selected incident, one POS connection each (see
    `incident.py` for which POS connection replays which, and when it starts).

    Returns when every connection's run has ended, or on `stop` once the runs in
    progress have stopped (the others are `not_started`). Raises `ReplayError` and
    `StoreError` before listening.
    """
    dialect = config.dialect or DEFAULT_DIALECT
    # The writer's own connection reads the recording: one DuckDB open, not two.
    with open_log(config.store, create=False, dialect=config.dialect) as log:
        if incident is None:
            incident = read_incident(log.index, config.selected)
        plans = [
            ServePlan(
                connection.recording,
                pacing=config.pacing,
                on_unexpected=config.on_unexpected,
                volatile=config.volatile or VolatilePaths.default(dialect),
                fresh_ids=config.fresh_ids,
                dialect=dialect,
            )
            for connection in incident.connections
        ]
        for connection, plan in zip(incident.connections, plans, strict=True):
            check_reproducible(log.index, log.meta, connection.recording, "client", plan.volatile)
        transport = resolve_transport(config, incident.connections[0].recording)
        listener = _Listener(incident, plans, log, config.pacing, stop)
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                serve_channels, listener.handle, config.host, config.port, transport, dialect
            )
            port = await nursery.start(serve)
            task_status.started(port)
            if stop is not None:
                nursery.start_soon(listener.stop_waiting)
            await listener.finished.wait()
            nursery.cancel_scope.cancel()
    return IncidentResult("serve", tuple(listener.results()))


def resolve_transport(config: ServeConfig, recording: RecordedSession) -> Transport:
    """The configured transport, else the recorded one, else WebSocket."""
    return config.transport or ("tcp" if recording.transport == "tcp" else "ws")


class _Listener:
    """Hands each POS connection the recorded connection it replays (`assign`), holds it
    until its start (`Incident.start_at` and the connections it comes after), plays it;
    refuses connections beyond the recorded ones. `finished` is set when every run has
    ended, or on `stop` when no run is in progress any more."""

    def __init__(
        self,
        incident: Incident,
        plans: list[ServePlan],
        log: EventLog,
        pacing: Pacing,
        stop: trio.Event | None,
    ) -> None:
        self.incident = incident
        self.plans = plans
        self.log = log
        self.pacing = pacing
        self.stop = stop
        self.untaken = list(range(len(plans)))
        self.t0: float | None = None  # when the first POS connected: the incident's start
        self.ended = [trio.Event() for _ in plans]
        self.taken = [False] * len(plans)
        self.running = 0
        self.waiting: set[trio.CancelScope] = set()
        self.finished = trio.Event()
        self.runs: list[ServeResult | None] = [None] * len(plans)
        self.started_at: list[float | None] = [None] * len(plans)
        self.ended_at: list[float | None] = [None] * len(plans)

    async def handle(self, channel: Channel) -> None:
        if not self.untaken or self.finished.is_set():
            await channel.aclose(TRY_AGAIN_LATER, "a replay is already running")
            return
        if self.t0 is None:
            self.t0 = trio.current_time()
        primed: Channel | None = None
        with trio.CancelScope() as waiting:
            self.waiting.add(waiting)
            primed = await self._first_message(channel)
            if not self.untaken:
                primed = None
            else:
                index = assign(self.untaken, primed.first, self._expects_of(primed.first))
                self.untaken.remove(index)
                self.taken[index] = True
                await self._hold(index)
        self.waiting.discard(waiting)
        if primed is None or waiting.cancelled_caught:
            with trio.move_on_after(CLOSE_GRACE_SECONDS):
                await channel.aclose(TRY_AGAIN_LATER, "a replay is already running")
            self._check_finished()
            return
        self.running += 1
        self.started_at[index] = trio.current_time()
        try:
            self.runs[index] = await play(primed, self.plans[index], self.log, stop=self.stop)
        finally:
            self.running -= 1
            self.ended_at[index] = trio.current_time()
            self.ended[index].set()
            self._check_finished()

    async def _first_message(self, channel: Channel) -> _Primed:
        """The POS's first message, read before the run so that it can pick the
        recording (none when the earliest untaken recording's server speaks first)."""
        first_untaken = self.plans[self.untaken[0]].session.messages[0]
        if first_untaken.sender == "server":
            return _Primed(channel, None, None)
        try:
            return _Primed(channel, await channel.receive(), None)
        except ChannelClosed as closed:
            return _Primed(channel, None, closed)

    def _expects_of(self, first: bytes | None) -> Callable[[int, bytes], bool]:
        """Whether connection k's plan expects the POS's first message, compared as the
        store records it, as the run will compare it (card numbers, secrets)."""
        stored = self.log.as_recorded("client", first) if first is not None else None
        return lambda index, data: self.plans[index].expects(data, stored)

    async def _hold(self, index: int) -> None:
        """Wait for the connections this one comes after (those a POS has taken) and
        for its offset."""
        for before in self.incident.connections[index].after:
            if self.taken[before]:
                await self.ended[before].wait()
        assert self.t0 is not None
        await trio.sleep_until(self.incident.start_at(index, self.t0, self.pacing))

    def _check_finished(self) -> None:
        stopped = self.stop is not None and self.stop.is_set()
        if all(event.is_set() for event in self.ended) or (stopped and self.running == 0):
            self.finished.set()

    async def stop_waiting(self) -> None:
        """On `stop`: connections still waiting for their start are let go; the runs in
        progress stop on their own (`play` watches `stop`)."""
        assert self.stop is not None
        await self.stop.wait()
        for scope in list(self.waiting):
            scope.cancel()
        self._check_finished()

    def results(self) -> list[ConnectionResult]:
        found = []
        for index, connection in enumerate(self.incident.connections):
            start, end = self.started_at[index], self.ended_at[index]
            found.append(
                ConnectionResult(
                    mode="serve",
                    replay_of=connection.session_id,
                    run=self.runs[index],
                    recorded_offset_s=connection.offset_s,
                    started_offset_s=(
                        start - self.t0 if start is not None and self.t0 is not None else None
                    ),
                    duration_s=end - start if start is not None and end is not None else None,
                )
            )
        return found


@attrs.frozen
class _Primed:
    """A channel whose first message was read already (to pick its recording): it is
    received again first, or the close that came instead of it."""

    inner: Channel
    first: bytes | None
    closed: ChannelClosed | None
    _given: list[bool] = attrs.field(factory=list)

    @property
    def peer(self) -> str:
        return self.inner.peer

    @property
    def transport(self) -> Transport:
        return self.inner.transport

    async def send(self, data: bytes) -> None:
        await self.inner.send(data)

    async def receive(self) -> bytes:
        if not self._given:
            self._given.append(True)
            if self.closed is not None:
                raise self.closed
            if self.first is not None:
                return self.first
        return await self.inner.receive()

    async def aclose(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        await self.inner.aclose(code, reason)


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
