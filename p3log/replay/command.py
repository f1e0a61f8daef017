"""`p3log replay serve` and `p3log replay drive` as processes: check the options, play
one run, exit with its verdict.

Serve's exit codes: 0 when every recording was played to the end (with
`--on-unexpected skip` or `error`, divergences on the way are reported, not fatal);
1 when a run diverged (`fail`) or ended before its recording did, or a connection
never came (the command was stopped first); 2 for bad input (options, no store, no
such session, a port that cannot be bound, a JUnit report that cannot be written).

Drive's: 0 when the run reproduced the recording (complete, no divergence); 1 when
it did not (a divergence, even one `--on-unexpected continue` went on after, a
server that closed early or was too late, a signal); 2 for bad input (options, no
store, no such session, no merchant secret for the recorded login, a target that
cannot be reached), with nothing recorded. Every problem is one plain line.
"""

from __future__ import annotations

import gc
import math
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from p3log.net.channel import Transport, parse_listen
from p3log.protocol.dialect import load_dialect
from p3log.replay.divergence import OnUnexpected
from p3log.replay.drive import DriveConfig
from p3log.replay.drive_incident import drive_incident
from p3log.replay.drive_plan import DEFAULT_TIMEOUT, DriveOnUnexpected, needs_secret
from p3log.replay.incident import Incident, SessionSelection, load_incident
from p3log.replay.junit import junit_xml, report_problem, write_report
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Pacing
from p3log.replay.recording import ReplayError
from p3log.replay.results import IncidentResult, StepLatency
from p3log.replay.serve import ServeConfig, resolve_transport, serve_incident, serve_replay
from p3log.settings import OptionError
from p3log.store.errors import StoreError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_DIVERGED",
    "DriveConfig",
    "OptionError",
    "ServeConfig",
    "build_drive_config",
    "build_serve_config",
    "run_drive_command",
    "run_serve_command",
    "serve_replay",
]

EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2
_ON_UNEXPECTED: tuple[OnUnexpected, ...] = ("fail", "skip", "error")
_DRIVE_ON_UNEXPECTED: tuple[DriveOnUnexpected, ...] = ("fail", "continue")
_TARGET_SCHEMES = ("ws://", "wss://", "tcp://")


def _pacing(speed: float | None, asap: bool, reactive: bool = False) -> Pacing:
    """The pacing `--speed`, `--asap` and `--reactive` ask for (at most one of them)."""
    flags = {"--speed": speed is not None, "--asap": asap, "--reactive": reactive}
    chosen = [name for name, given in flags.items() if given]
    if len(chosen) > 1:
        raise OptionError(f"{' and '.join(chosen)}: choose one way of pacing")
    try:
        if asap:
            return Pacing("asap")
        if reactive:
            return Pacing("reactive")
        return Pacing.at_speed(1.0 if speed is None else speed)
    except ValueError as exc:
        raise OptionError(f"--speed: {exc}") from None


def _volatile(
    defaults: VolatilePaths, ignore_paths: Sequence[str], compare_paths: Sequence[str]
) -> VolatilePaths:
    """`defaults` with `--ignore-path` added and `--compare-path` taken out."""
    try:
        return defaults.adding(ignore_paths).without(compare_paths)
    except ValueError as exc:
        raise OptionError(f"--ignore-path/--compare-path: {exc}") from None


def build_serve_config(
    *,
    store: Path,
    session: str | None = None,
    listen: str,
    sessions: str | None = None,
    since: str | None = None,
    until: str | None = None,
    speed: float | None = None,
    asap: bool = False,
    reactive: bool = False,
    on_unexpected: OnUnexpected = "fail",
    fresh_ids: bool = False,
    ignore_paths: Sequence[str] = (),
    compare_paths: Sequence[str] = (),
    transport: Transport | None = None,
    dialect_path: Path | None = None,
) -> ServeConfig:
    """The `ServeConfig` for the command's options; raises `OptionError` (one line)
    or `SettingsError` (a bad dialect file)."""
    selection = SessionSelection.from_options(session, sessions, since, until)
    pacing = _pacing(speed, asap, reactive)
    if on_unexpected not in _ON_UNEXPECTED:
        raise OptionError(f"--on-unexpected {on_unexpected!r}: expected fail, skip or error")
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise OptionError(f"--listen {exc}") from None
    dialect = load_dialect(dialect_path)
    volatile = _volatile(VolatilePaths.default(dialect), ignore_paths, compare_paths)
    return ServeConfig(
        store=store,
        session=session or "",
        selection=selection,
        host=host,
        port=port,
        transport=transport,
        pacing=pacing,
        on_unexpected=on_unexpected,
        fresh_ids=fresh_ids,
        volatile=volatile,
        dialect=dialect if dialect_path is not None else None,
    )


def run_serve_command(
    config: ServeConfig,
    *,
    announce: Callable[[str], None],
    complain: Callable[[str], None],
    junit: Path | None = None,
) -> int:
    """Serve every selected connection until each run has ended or SIGINT/SIGTERM;
    returns the exit code (0 only when every connection played to its end).

    `announce` gets the banner (`… listening on ws://HOST:PORT/ …`) and the summaries,
    `complain` the one-line problems. With `junit`, the JUnit XML report (a test case
    per connection) is written there (atomically) once the run is over, whatever its
    verdict; bad input writes none.
    """
    problem = report_problem(junit) if junit is not None else None
    result: IncidentResult | None = None
    try:
        if problem is None:
            result = trio.run(_main, config, announce)
    except* (ReplayError, StoreError) as group:
        problem = str(_first(group))
    except* OSError as group:
        first = _first(group)
        reason = first.strerror if isinstance(first, OSError) and first.strerror else first
        problem = f"cannot listen on {config.host}:{config.port}: {reason}"
    if problem is not None:
        complain(f"p3log: {problem}")
        return EXIT_BAD_INPUT
    assert result is not None
    if result.started:
        code = _verdict(result, announce, complain)
    else:  # a gate whose POS never came has not passed
        complain("p3log replay: stopped before any POS connected")
        code = EXIT_DIVERGED
    return _with_report(code, junit, result, complain)


def _verdict(
    result: IncidentResult, announce: Callable[[str], None], complain: Callable[[str], None]
) -> int:
    """Print each connection's summary (and the incident's when there are several) and
    each failure, one line each; the exit code: 0 only if every connection passed."""
    several = len(result.connections) > 1
    for connection in result.connections:
        announce(f"p3log replay: {connection.summary()}")
    if several or result.mode == "drive":
        announce(f"p3log replay: {result.summary()}")
    for stat in result.latencies:
        announce(f"p3log replay: {_latency_line(stat)}")
    for connection in result.connections:
        if connection.failure is not None:
            named = f"session {connection.replay_of}: " if several else ""
            complain(f"p3log replay: {named}{connection.failure}")
    return 0 if result.passed else EXIT_DIVERGED


def _latency_line(stat: StepLatency) -> str:
    """`latency first_update EXECUTE_TRANSACTION_REQUEST (12): p50/p95/p99 1.2/…/… ms,
    recorded …` for the end of a drive."""

    def side(values: tuple[float, float, float] | None) -> str:
        return "-" if values is None else "/".join(f"{v:.1f}" for v in values)

    return (
        f"latency {stat.step} {stat.msg_type} ({stat.count}): p50/p95/p99 "
        f"{side(stat.replayed_ms)} ms, recorded {side(stat.recorded_ms)} ms"
    )


async def _main(config: ServeConfig, announce: Callable[[str], None]) -> IncidentResult:
    results: list[IncidentResult] = []
    # The signal receiver is open before the port is announced, so no signal is missed.
    async with _stop_on_signals() as stop:
        incident = await trio.to_thread.run_sync(load_incident, config.store, config.selected)
        first = incident.connections[0].recording
        config = attrs.evolve(config, transport=resolve_transport(config, first))
        _settle()
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[int]) -> None:
                found = await serve_incident(
                    config, incident=incident, stop=stop, task_status=task_status
                )
                results.append(found)

            port = await nursery.start(serve)
            announce(
                f"p3log replay: listening on {_url(config, port)}, serving "
                f"{incident.describe()} {_how(incident, config)}"
            )
    return results[0]


def _with_report(
    code: int, junit: Path | None, result: IncidentResult, complain: Callable[[str], None]
) -> int:
    """The exit code once the JUnit report (a test case per connection) is written; one
    that cannot be written after all (checked before the run) is bad input."""
    if junit is None:
        return code
    try:
        write_report(junit, junit_xml(result.connections))
    except OSError as exc:
        complain(f"p3log: cannot write the JUnit report {junit}: {exc.strerror or exc}")
        return max(code, EXIT_BAD_INPUT)
    return code


def _settle() -> None:
    """Move everything loaded so far (the recording, the libraries) out of the garbage
    collector's sight: a full collection over it takes tens of milliseconds, which a
    replay keeping time to the millisecond cannot spend in the middle of a run."""
    gc.collect()
    gc.freeze()


@asynccontextmanager
async def _stop_on_signals() -> AsyncIterator[trio.Event]:
    """An event that SIGINT or SIGTERM sets while the block runs."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, signals, stop)
            yield stop
            nursery.cancel_scope.cancel()


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for _ in signals:
        stop.set()


def _how(incident: Incident, config: ServeConfig | DriveConfig) -> str:
    """`(N POS and M server messages; pacing; on unexpected: …)` for the banner."""
    recordings = [connection.recording for connection in incident.connections]
    pos = sum(len(recording.pos_messages) for recording in recordings)
    server = sum(len(recording.server_messages) for recording in recordings)
    return (
        f"({pos} POS and {server} server messages; "
        f"{config.pacing.describe()}; on unexpected: {config.on_unexpected})"
    )


def _url(config: ServeConfig, port: int) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"tcp://{host}:{port}" if config.transport == "tcp" else f"ws://{host}:{port}/"


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


# --- drive ---------------------------------------------------------------------------


def build_drive_config(
    *,
    store: Path,
    session: str | None = None,
    target: str,
    sessions: str | None = None,
    since: str | None = None,
    until: str | None = None,
    secret: str | None,
    secret_env: str,
    speed: float | None = None,
    asap: bool = False,
    on_unexpected: DriveOnUnexpected = "fail",
    timeout: float = DEFAULT_TIMEOUT,
    ignore_paths: Sequence[str] = (),
    compare_paths: Sequence[str] = (),
    dialect_path: Path | None = None,
) -> DriveConfig:
    """The `DriveConfig` for the command's options; raises `OptionError` (one line)
    or `SettingsError` (a bad dialect file). `secret` is the value of the variable
    `secret_env` names (None or empty: not set)."""
    selection = SessionSelection.from_options(session, sessions, since, until)
    pacing = _pacing(speed, asap)
    if on_unexpected not in _DRIVE_ON_UNEXPECTED:
        raise OptionError(f"--on-unexpected {on_unexpected!r}: expected fail or continue")
    if not (math.isfinite(timeout) and timeout > 0):
        raise OptionError(f"--timeout: must be a positive number of seconds, not {timeout}")
    if not target.startswith(_TARGET_SCHEMES):
        raise OptionError(f"--target {target!r}: expected ws://HOST:PORT/ or tcp://HOST:PORT")
    if not secret_env:
        raise OptionError("--secret-env: name an environment variable")
    dialect = load_dialect(dialect_path)
    volatile = _volatile(VolatilePaths.between_runs(dialect), ignore_paths, compare_paths)
    return DriveConfig(
        store=store,
        session=session or "",
        selection=selection,
        target=target,
        secret=secret or None,
        pacing=pacing,
        on_unexpected=on_unexpected,
        timeout=timeout,
        volatile=volatile,
        dialect=dialect if dialect_path is not None else None,
        secret_env=secret_env,
    )


def run_drive_command(
    config: DriveConfig,
    *,
    announce: Callable[[str], None],
    complain: Callable[[str], None],
    junit: Path | None = None,
    progress: Callable[[str | None], None] | None = None,
) -> int:
    """Drive every selected connection until each run has ended or SIGINT/SIGTERM;
    returns the exit code (0 only when every connection reproduced its recording).

    The sessions are read and the secret checked before anything connects.
    `progress`, when given, gets a progress line every `PROGRESS_SECONDS` and None
    once the drive is over. With `junit`, the JUnit XML report is written there as in
    serve mode.
    """
    problem: str | None = None
    result: IncidentResult | None = None
    try:
        if junit is not None and (unwritable := report_problem(junit)) is not None:
            raise ReplayError(unwritable)
        incident = load_incident(config.store, config.selected)
        logging_in = [c.recording for c in incident.connections if needs_secret(c.recording)]
        if not config.secret and logging_in:
            name = config.secret_env
            raise ReplayError(
                f"${name} is not set: session {logging_in[0].session_id} logs in, and the "
                f"store never holds the merchant secret (set {name}, or name another "
                "variable with --secret-env)"
            )
        _settle()
        result = trio.run(_drive_main, config, incident, announce, progress)
    except* (ReplayError, StoreError) as group:
        problem = str(_first(group))
    if problem is not None:
        complain(f"p3log: {problem}")
        return EXIT_BAD_INPUT
    assert result is not None
    return _with_report(_verdict(result, announce, complain), junit, result, complain)


async def _drive_main(
    config: DriveConfig,
    incident: Incident,
    announce: Callable[[str], None],
    progress: Callable[[str | None], None] | None,
) -> IncidentResult:
    async with _stop_on_signals() as stop:
        announce(
            f"p3log replay: driving {incident.describe()} against "
            f"{config.target} {_how(incident, config)}"
        )
        report = (lambda snapshot: progress(snapshot.line())) if progress is not None else None
        try:
            return await drive_incident(config, incident=incident, stop=stop, progress=report)
        finally:
            if progress is not None:
                progress(None)
