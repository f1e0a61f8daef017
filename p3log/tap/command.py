"""`p3log tap` as a process: record until SIGINT/SIGTERM, then shut down in order."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import trio

from p3log.settings import OptionError
from p3log.store.log import EventLog
from p3log.tap.server import TapConfig, open_listeners, run_tap
from p3log.visible import VisibleFormatter


def run_tap_process(
    config: TapConfig,
    store: Path,
    announce: Callable[[str], None],
    dialect_file: Path | None = None,
) -> None:
    """Raises `OptionError` when `--listen` cannot be bound (a busy port), before the
    store is created or opened. The tap journals; its indexer child (given
    `dialect_file`, the tap's `--dialect`) writes the index."""
    # Problems the tap survives (a full disk, a failing index) are one line each on stderr.
    # Their text can hold a peer's bytes (a DuckDB error quoting a value): shown visible.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(VisibleFormatter("p3log tap: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # Past a file-size limit, write(2) fails with EFBIG (handled like a full disk)
    # instead of the default SIGXFSZ killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    trio.run(_main, config, store, announce, dialect_file)


async def _main(
    config: TapConfig, store: Path, announce: Callable[[str], None], dialect_file: Path | None
) -> None:
    # The signal receiver stays installed until the store is closed, so a signal
    # during shutdown is one more request to stop, never a KeyboardInterrupt.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            listeners = await open_listeners(config)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise OptionError(f"--listen {config.host}:{config.port}: {reason}") from None
        # The journal only: a reader holding index.duckdb cannot stop the tap.
        with EventLog.open(store, index=False) as log:
            stop = trio.Event()
            async with trio.open_nursery() as watcher:
                watcher.start_soon(_stop_on_signal, signals, stop)
                async with trio.open_nursery() as recording:
                    port = await recording.start(
                        partial(run_tap, listeners=listeners, dialect_file=dialect_file),
                        config,
                        log,
                        stop,
                    )
                    scheme = {"ws": "wss" if config.tls_cert else "ws", "tcp": "tcp"}
                    announce(
                        f"p3log tap: listening on {scheme[config.transport]}://{config.host}:"
                        f"{port}/ -> {config.upstream}, recording into {store} "
                        f"(durability {config.durability})"
                    )
                # run_tap returns once stopped and shut down; the watcher is done too.
                watcher.cancel_scope.cancel()
        announce(f"p3log tap: stopped; {log.head[0]} events in {store}")


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for _ in signals:
        stop.set()
