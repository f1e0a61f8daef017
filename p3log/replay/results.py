"""How an incident replayed: one `ConnectionResult` per recorded connection (what a
per-connection report, a JUnit test case, is made of) and the `IncidentResult` over
all of them, with drive's load figures (throughput, per-step latency against the
recording) and the `replay_summary` event they are recorded as.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from p3log.replay.diff import STEPS, LatencySample, percentile
from p3log.replay.divergence import Divergence
from p3log.replay.pump import RunOutcome
from p3log.store.lifecycle import ReplaySummary
from p3log.wording import counted

if TYPE_CHECKING:  # serve and drive build these results: no import cycle at run time
    from p3log.replay.drive import DriveResult
    from p3log.replay.serve import ServeResult

__all__ = [
    "ConnectionOutcome",
    "ConnectionResult",
    "IncidentResult",
    "StepLatency",
    "step_latencies",
]

#: A run's outcome, or `not_started`: the command stopped (or, in drive mode, the
#: target could not be reached) before this connection's run began.
ConnectionOutcome = RunOutcome | Literal["not_started"]
Mode = Literal["serve", "drive"]
_QUANTILES = (0.50, 0.95, 0.99)


@attrs.frozen
class ConnectionResult:
    """One recorded connection of an incident and how its replay went.

    `run` is the run's own result (`ServeResult` or `DriveResult`: the counts, the
    divergences with what arrived, what was expected and where they differ, and the
    run's session in the store); None when it never started (`problem` says why, if
    anything went wrong). Offsets are seconds from the incident's start: where the
    recording put the connection (`recorded_offset_s`) and where the replay started it;
    `duration_s` is the run's length.
    """

    mode: Mode
    replay_of: str
    run: ServeResult | DriveResult | None
    recorded_offset_s: float
    started_offset_s: float | None = None
    duration_s: float | None = None
    problem: str | None = None

    @property
    def session_id(self) -> str | None:
        """The run's session in the store (None: nothing was recorded)."""
        return self.run.session_id if self.run is not None else None

    @property
    def outcome(self) -> ConnectionOutcome:
        return self.run.outcome if self.run is not None else "not_started"

    @property
    def divergences(self) -> tuple[Divergence, ...]:
        return self.run.divergences if self.run is not None else ()

    @property
    def passed(self) -> bool:
        """Serve: played to its end (divergences skipped or answered on the way count,
        but do not fail it). Drive: reproduced, complete and without a divergence."""
        return self.failure is None

    @property
    def failure(self) -> str | None:
        """One line saying why the connection did not pass, else None."""
        if self.run is None:
            return self.problem or "not started: the replay was stopped first"
        return self.run.connection().failure

    @property
    def properties(self) -> tuple[tuple[str, str], ...]:
        """Its timings and counts, for its JUnit test case."""
        offsets = (
            ("recorded_offset_s", self.recorded_offset_s),
            ("started_offset_s", self.started_offset_s),
        )
        timing = tuple((name, f"{value:.6f}") for name, value in offsets if value is not None)
        if self.run is None:
            return (("outcome", self.outcome), *timing)
        return (*self.run.connection().properties, *timing)

    def summary(self) -> str:
        if self.run is not None:
            return self.run.summary()
        return f"session {self.replay_of}: not started"


@attrs.frozen
class StepLatency:
    """One step of the requests (`diff.latency_samples`' steps) over every connection:
    p50/p95/p99 in ms as recorded and as replayed (None where a side has none)."""

    step: str
    msg_type: str
    count: int
    recorded_ms: tuple[float, float, float] | None
    replayed_ms: tuple[float, float, float] | None

    def to_json(self) -> dict[str, object]:
        def side(values: tuple[float, float, float] | None) -> dict[str, float] | None:
            if values is None:
                return None
            return {
                f"p{round(q * 100)}_ms": round(v, 3)
                for q, v in zip(_QUANTILES, values, strict=True)
            }

        return {
            "step": self.step,
            "msg_type": self.msg_type,
            "count": self.count,
            "recorded": side(self.recorded_ms),
            "replayed": side(self.replayed_ms),
        }


def step_latencies(
    recorded: Iterable[LatencySample], replayed: Iterable[LatencySample]
) -> tuple[StepLatency, ...]:
    """p50/p95/p99 per step and request type, pooled over every connection."""
    grouped: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for side, samples in ((0, recorded), (1, replayed)):
        for sample in samples:
            grouped.setdefault((sample.step, sample.msg_type), ([], []))[side].append(sample.ms)

    def quantiles(values: Sequence[float]) -> tuple[float, float, float] | None:
        if not values:
            return None
        p50, p95, p99 = (percentile(values, q) for q in _QUANTILES)
        return (p50, p95, p99)

    order = {step: index for index, step in enumerate(STEPS)}
    keys = sorted(grouped, key=lambda key: (order.get(key[0], len(order)), key[0], key[1]))
    return tuple(
        StepLatency(
            *key,
            count=len(grouped[key][1]),
            recorded_ms=quantiles(grouped[key][0]),
            replayed_ms=quantiles(grouped[key][1]),
        )
        for key in keys
    )


@attrs.frozen
class IncidentResult:
    """Every connection of an incident's replay, in recorded order; drive also
    measures `messages` (POS messages sent and server messages received, matched or
    not) over `seconds` (from the first connection's start to the last one's end),
    and the step latencies."""

    mode: Mode
    connections: tuple[ConnectionResult, ...]
    seconds: float = 0.0
    messages: int = 0
    latencies: tuple[StepLatency, ...] = ()
    session_id: str | None = None  # drive: the session its `replay_summary` is in

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.connections)

    @property
    def started(self) -> bool:
        return any(c.run is not None for c in self.connections)

    @property
    def divergences(self) -> int:
        return sum(len(c.divergences) for c in self.connections)

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """`3 connections: 3 passed, 0 failed; 0 divergences` (+ drive's throughput)."""
        total = len(self.connections)
        passed = sum(c.passed for c in self.connections)
        line = (
            f"{counted(total, 'connection')}: {passed} passed, {total - passed} failed; "
            f"{counted(self.divergences, 'divergence')}"
        )
        if self.mode == "drive":
            line += (
                f"; {self.messages} messages in {self.seconds:.2f} s "
                f"({self.messages_per_s:.0f} messages/s)"
            )
        return line

    def event(self, replay_of: Sequence[str]) -> ReplaySummary:
        """The `replay_summary` event recording this result."""
        return ReplaySummary(
            mode=self.mode,
            replay_of=tuple(replay_of),
            connections=tuple(
                {
                    "replay_of": c.replay_of,
                    "session_id": c.session_id,
                    "outcome": c.outcome,
                    "passed": c.passed,
                    "divergences": len(c.divergences),
                    "failure": c.failure,
                    "recorded_offset_s": round(c.recorded_offset_s, 6),
                    "started_offset_s": (
                        round(c.started_offset_s, 6) if c.started_offset_s is not None else None
                    ),
                    "duration_s": round(c.duration_s, 6) if c.duration_s is not None else None,
                }
                for c in self.connections
            ),
            seconds=round(self.seconds, 6),
            messages=self.messages,
            messages_per_s=round(self.messages_per_s, 3),
            latencies=tuple(item.to_json() for item in self.latencies),
        )
