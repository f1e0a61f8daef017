"""`p3log replay serve` as a process: check the options, serve one run, exit with its verdict.

Exit codes: 0 when the recording was played to the end (with `--on-unexpected skip`
or `error`, divergences on the way are reported, not fatal) or the command was
stopped before any POS connected; 1 when the run diverged (`fail`) or ended before
the recording did; 2 for bad input (options, no store, no such session, a port
that cannot be bound). Every problem is one plain line.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import attrs
import trio

from p3log.net.channel import Transport, parse_listen
from p3log.protocol.dialect import load_dialect
from p3log.replay.divergence import OnUnexpected
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Pacing
from p3log.replay.recording import ReplayError, load_session
from p3log.replay.serve import ServeConfig, ServeResult, resolve_transport, serve_replay
from p3log.store.errors import StoreError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_DIVERGED",
    "OptionError",
    "ServeConfig",
    "build_serve_config",
    "run_serve_command",
    "serve_replay",
]

EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2
_ON_UNEXPECTED: tuple[OnUnexpected, ...] = ("fail", "skip", "error")


class OptionError(Exception):
    """An option value the user has to correct."""


def build_serve_config(
    *,
    store: Path,
    session: str,
    listen: str,
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
    flags = {"--speed": speed is not None, "--asap": asap, "--reactive": reactive}
    chosen = [name for name, given in flags.items() if given]
    if len(chosen) > 1:
        raise OptionError(f"{' and '.join(chosen)}: choose one way of pacing")
    try:
        if asap:
            pacing = Pacing("asap")
        elif reactive:
            pacing = Pacing("reactive")
        else:
            pacing = Pacing.at_speed(1.0 if speed is None else speed)
    except ValueError as exc:
        raise OptionError(f"--speed: {exc}") from None
    if on_unexpected not in _ON_UNEXPECTED:
        raise OptionError(f"--on-unexpected {on_unexpected!r}: expected fail, skip or error")
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise OptionError(f"--listen {exc}") from None
    dialect = load_dialect(dialect_path)
    try:
        volatile = VolatilePaths.default(dialect).adding(ignore_paths).without(compare_paths)
    except ValueError as exc:
        raise OptionError(f"--ignore-path/--compare-path: {exc}") from None
    return ServeConfig(
        store=store,
        session=session,
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
) -> int:
    """Serve one replay run until it ends or SIGINT/SIGTERM; returns the exit code.

    `announce` gets the banner (`… listening on ws://HOST:PORT/ …`) and the summary,
    `complain` the one-line problems.
    """
    problem: str | None = None
    result: ServeResult | None = None
    try:
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
    if result is None:
        announce("p3log replay: stopped before any POS connected")
        return 0
    announce(f"p3log replay: {result.summary()}")
    if result.failure is not None:
        complain(f"p3log replay: diverged: {result.failure}")
        return EXIT_DIVERGED
    if result.outcome == "interrupted":
        complain("p3log replay: stopped before the recording was over")
        return EXIT_DIVERGED
    if result.outcome != "complete":
        last = result.divergences[-1].summary() if result.divergences else "the POS left early"
        complain(f"p3log replay: incomplete: {last}")
        return EXIT_DIVERGED
    return 0


async def _main(config: ServeConfig, announce: Callable[[str], None]) -> ServeResult | None:
    # The signal receiver is open before the port is announced, so no signal is missed.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        recording = await trio.to_thread.run_sync(load_session, config.store, config.session)
        config = attrs.evolve(config, transport=resolve_transport(config, recording))
        stop = trio.Event()
        results: list[ServeResult | None] = []
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[int]) -> None:
                found = await serve_replay(
                    config, recording=recording, stop=stop, task_status=task_status
                )
                results.append(found)
                nursery.cancel_scope.cancel()

            port = await nursery.start(serve)
            nursery.start_soon(_stop_on_signal, signals, stop)
            pos, server = len(recording.pos_messages), len(recording.server_messages)
            announce(
                f"p3log replay: listening on {_url(config, port)}, serving session "
                f"{recording.session_id} ({pos} POS and {server} server messages; "
                f"{config.pacing.describe()}; on unexpected: {config.on_unexpected})"
            )
        return results[0] if results else None


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for _ in signals:
        stop.set()


def _url(config: ServeConfig, port: int) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"tcp://{host}:{port}" if config.transport == "tcp" else f"ws://{host}:{port}/"


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
