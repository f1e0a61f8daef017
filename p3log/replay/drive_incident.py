"""`replay drive` over an incident: every selected recorded connection against the
target, concurrently, at their recorded offsets (a recorded day as a load test).

    drive_incident
    ├── open the store's writer, read the incident through it
    ├── dial the first connection (nothing is recorded if the target cannot be reached)
    └── one nursery:
        ├── per connection: wait for the ones it comes after and for its offset
        │   (`Incident.start_at`: divided by --speed, none with --asap), dial, run
        │   (`drive.drive`, one recorded replay session each)
        └── progress: a `DriveProgress` snapshot every PROGRESS_SECONDS (when asked)
    then the step latencies of every run against its recording, and the
    `replay_summary` event, in a session of its own.

A later connection whose target cannot be reached is that connection's failure
(`not_started`, with the reason), not the incident's: the others were recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

import attrs
import trio

from p3log.net.channel import Channel
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.replay.diff import LatencySample, latency_samples
from p3log.replay.drive import ConnectError, DriveConfig, DriveResult, dial, drive
from p3log.replay.drive_plan import DrivePlan
from p3log.replay.incident import Incident, read_incident
from p3log.replay.pump import new_replay_id
from p3log.replay.recording import read_sessions
from p3log.replay.redaction import check_reproducible
from p3log.replay.results import ConnectionResult, IncidentResult, step_latencies
from p3log.store.log import EventLog

__all__ = ["PROGRESS_SECONDS", "DriveProgress", "drive_incident"]

PROGRESS_SECONDS = 0.5


@attrs.frozen
class DriveProgress:
    """How far a drive has got: connections open and ended, messages sent (POS side)
    and received (server side), divergences so far."""

    connections: int
    open: int
    ended: int
    sent: int
    received: int
    divergences: int

    def line(self) -> str:
        return (
            f"{self.open} connections open, {self.ended}/{self.connections} ended, "
            f"{self.sent} messages sent, {self.received} received, {self.divergences} divergences"
        )


async def drive_incident(
    config: DriveConfig,
    *,
    incident: Incident | None = None,
    stop: trio.Event | None = None,
    progress: Callable[[DriveProgress], None] | None = None,
) -> IncidentResult:
    """Drive every connection of the selected incident against `config.target`.

    Raises `ReplayError` (no such session), `ConnectError` (the target cannot be
    reached for the first connection) and `StoreError` before anything is recorded.
    """
    dialect = config.dialect or DEFAULT_DIALECT
    with open_log(config.store, create=False, dialect=config.dialect) as log:
        if incident is None:
            incident = read_incident(log.index, config.selected)
        driver = _Driver(config, incident, log, dialect, stop)
        for connection, plan in zip(incident.connections, driver.plans, strict=True):
            check_reproducible(log.index, log.meta, connection.recording, "server", plan.volatile)
        async with AsyncExitStack() as stack:
            first = await dial(stack, config, dialect)
            await driver.run(first, progress)
        return driver.result()


class _Driver:
    def __init__(
        self,
        config: DriveConfig,
        incident: Incident,
        log: EventLog,
        dialect: Dialect,
        stop: trio.Event | None,
    ) -> None:
        self.config = config
        self.incident = incident
        self.log = log
        self.dialect = dialect
        self.stop = stop
        self.plans: list[DrivePlan] = [
            config.plan(connection.recording, dialect) for connection in incident.connections
        ]
        self.ended = [trio.Event() for _ in self.plans]
        self.runs: list[DriveResult | None] = [None] * len(self.plans)
        self.problems: list[str | None] = [None] * len(self.plans)
        self.started_at: list[float | None] = [None] * len(self.plans)
        self.ended_at: list[float | None] = [None] * len(self.plans)
        self.waiting: set[trio.CancelScope] = set()
        self.open = 0
        self.t0 = 0.0

    async def run(self, first: Channel, progress: Callable[[DriveProgress], None] | None) -> None:
        self.t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            if self.stop is not None:
                nursery.start_soon(self._stop_waiting)
            if progress is not None:
                nursery.start_soon(self._report, progress)
            async with trio.open_nursery() as runs:
                for index in range(len(self.plans)):
                    runs.start_soon(self._connection, index, first if index == 0 else None)
            nursery.cancel_scope.cancel()
        if progress is not None:
            progress(self.progress())

    async def _connection(self, index: int, channel: Channel | None) -> None:
        try:
            if channel is not None:
                await self._play(index, channel)
                return
            with trio.CancelScope() as waiting:
                self.waiting.add(waiting)
                for before in self.incident.connections[index].after:
                    await self.ended[before].wait()
                await trio.sleep_until(self.incident.start_at(index, self.t0, self.config.pacing))
            self.waiting.discard(waiting)
            if waiting.cancelled_caught:
                return
            async with AsyncExitStack() as stack:
                try:
                    dialled = await dial(stack, self.config, self.dialect)
                except ConnectError as exc:
                    self.problems[index] = str(exc)
                    return
                await self._play(index, dialled)
        finally:
            self.ended_at[index] = trio.current_time()
            self.ended[index].set()

    async def _play(self, index: int, channel: Channel) -> None:
        self.started_at[index] = trio.current_time()
        self.open += 1
        try:
            self.runs[index] = await drive(
                channel,
                self.plans[index],
                self.log,
                self.config.target,
                stop=self.stop,
            )
        finally:
            self.open -= 1

    async def _stop_waiting(self) -> None:
        """On `stop`: the connections still waiting for their start never start; the
        runs in progress stop on their own (`Run` watches `stop`)."""
        assert self.stop is not None
        await self.stop.wait()
        for waiting in list(self.waiting):
            waiting.cancel()

    async def _report(self, progress: Callable[[DriveProgress], None]) -> None:
        while True:
            await trio.sleep(PROGRESS_SECONDS)
            progress(self.progress())

    def progress(self) -> DriveProgress:
        return DriveProgress(
            connections=len(self.plans),
            open=self.open,
            ended=sum(event.is_set() for event in self.ended),
            sent=sum(plan.pos_sent for plan in self.plans),
            received=sum(plan.server_received for plan in self.plans),
            divergences=sum(len(plan.divergences) for plan in self.plans),
        )

    def result(self) -> IncidentResult:
        """Every connection's result, the throughput and the step latencies; recorded as
        a `replay_summary` event in a session of its own."""
        connections = []
        recorded: list[LatencySample] = []
        replayed: list[LatencySample] = []
        self.log.flush()  # the runs' events are in the index, to be read back
        ran = [run.session_id for run in self.runs if run is not None]
        for live in read_sessions(self.log.index, ran):
            replayed += latency_samples(live, self.dialect)
        for index, connection in enumerate(self.incident.connections):
            run, start, end = self.runs[index], self.started_at[index], self.ended_at[index]
            if run is not None:
                recorded += latency_samples(connection.recording, self.dialect)
            connections.append(
                ConnectionResult(
                    mode="drive",
                    replay_of=connection.session_id,
                    run=run,
                    recorded_offset_s=connection.offset_s,
                    started_offset_s=start - self.t0 if start is not None else None,
                    duration_s=end - start if start is not None and end is not None else None,
                    problem=self.problems[index],
                )
            )
        ends = [end for end in self.ended_at if end is not None]
        summary_id = new_replay_id()
        found = IncidentResult(
            mode="drive",
            connections=tuple(connections),
            seconds=(max(ends) - self.t0) if ends else 0.0,
            messages=sum(plan.pos_sent + plan.server_received for plan in self.plans),
            latencies=step_latencies(recorded, replayed),
            session_id=summary_id,
        )
        self.log.record_lifecycle(summary_id, found.event(self.incident.session_ids))
        return found
