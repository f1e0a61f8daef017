"""The tap's indexer: `p3log index --follow` as a child process, and that process.

The tap only journals; DuckDB, the projections, sealed segments and snapshots run in
an indexer process that follows the journal (`p3log.store.indexer`), so they share
neither the tap's GIL nor its event loop, and the tap's memory does not depend on
how far behind the index is.

- `IndexerProcess` (in the tap): starts the child with its stdin a pipe, restarts it
  if it dies (after 1 s, doubling up to 30 s, each time logged), and on shutdown
  closes the pipe (the child catches up and exits) and waits for it. The child runs
  in a session of its own, so a Ctrl-C in the terminal reaches the tap alone, which
  stops in order; a tap killed with SIGKILL closes the pipe too, so its indexer
  catches up and exits rather than running on.
- `run_indexer` (the child, or `p3log index` by hand): holds index.lock, catches up,
  and with `follow` keeps up at its cadence until SIGINT/SIGTERM or the end of a
  stdin pipe, then drains. While another process has the index (DuckDB's own lock:
  a notebook holds it read-only; or index.lock: a killed tap's indexer still catching
  up), it says so once and tries again every second.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import TypeVar

import duckdb
import trio

from p3log.projections.opening import index_followers, open_indexer
from p3log.protocol.dialect import Dialect
from p3log.store.errors import EXIT_BAD_INPUT, StoreBusy, StoreError
from p3log.store.indexer import INDEX_INTERVAL, Indexer, IndexInUse, first_line, open_index
from p3log.store.layout import index_lock, open_layout
from p3log.visible import VisibleFormatter

logger = logging.getLogger("p3log")

RESTART_FIRST = 1.0
RESTART_MAX = 30.0
# A child that ran this long before it died starts the backoff afresh.
_HEALTHY_SECONDS = 60.0
_BUSY_RETRY_SECONDS = 1.0
# How long a stopping tap waits for its indexer's last catch-up.
STOP_SECONDS = 10.0


class IndexerProcess:
    """Supervises the tap's indexer child (see the module docstring)."""

    def __init__(self, store: Path, dialect_file: Path | None = None) -> None:
        self.argv = [sys.executable, "-m", "p3log", "index", "--store", str(store), "--follow"]
        if dialect_file is not None:
            self.argv += ["--dialect", str(dialect_file)]
        self._stopping = False
        self._process: trio.Process | None = None
        self._backoff = trio.CancelScope()
        self._finished = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        delay = RESTART_FIRST
        unstartable = False  # the last attempt to start one failed (said once)
        try:
            while not self._stopping:
                started = trio.current_time()
                try:
                    self._process = await trio.lowlevel.open_process(
                        self.argv,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                except OSError as exc:
                    # No descriptor or memory for a child (every descriptor held by
                    # connections): the tap records on, and tries again later.
                    self._process = None
                    if not unstartable:
                        logger.error(
                            "cannot start the indexer (%s); recording continues in the "
                            "journal, and it is tried again every %g s at most",
                            exc.strerror or exc,
                            RESTART_MAX,
                        )
                    unstartable = True
                else:
                    unstartable = False
                task_status.started()  # once the first attempt ran (later calls do nothing)
                task_status = trio.TASK_STATUS_IGNORED
                if self._process is not None:
                    code = await self._process.wait()
                    if self._stopping:
                        break
                    if code == EXIT_BAD_INPUT:
                        # It refused the store (a damaged index, a journal that does not
                        # continue it), in the line above: a restart would refuse again,
                        # saying so every 30 s for as long as the tap runs.
                        logger.error(
                            "the indexer (pid %d) refused the store; not restarting it: "
                            "recording continues in the journal, and p3log index --store "
                            "DIR catches the index up once the store is repaired",
                            self._process.pid,
                        )
                        break
                    if trio.current_time() - started > _HEALTHY_SECONDS:
                        delay = RESTART_FIRST
                    logger.error(
                        "the indexer (pid %d) %s; restarting it in %g s",
                        self._process.pid,
                        _ended(code),
                        delay,
                    )
                with self._backoff:
                    await trio.sleep(delay)
                self._backoff = trio.CancelScope()
                delay = min(2 * delay, RESTART_MAX)
        finally:
            with trio.CancelScope(shield=True):
                await self._close_pipe()
            self._finished.set()

    async def stop(self) -> None:
        """Tell the indexer to stop (the end of its stdin): it catches up with the
        journal and exits; returns once it has, or after STOP_SECONDS (an indexer far
        behind, or paused, goes on alone: the tap's shutdown must not hang on it)."""
        self._stopping = True
        self._backoff.cancel()
        await self._close_pipe()
        with trio.move_on_after(STOP_SECONDS) as waiting:
            await self._finished.wait()
        if waiting.cancelled_caught and self._process is not None:
            logger.warning(
                "the indexer (pid %d) is still catching up after %g s; it goes on alone "
                "and exits once the index is level",
                self._process.pid,
                STOP_SECONDS,
            )

    async def _close_pipe(self) -> None:
        process = self._process
        if process is not None and process.stdin is not None:
            await process.stdin.aclose()


def _ended(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


# --- the indexer process ---------------------------------------------------------


def run_indexer(
    root: Path, *, follow: bool, interval: float = INDEX_INTERVAL, dialect: Dialect | None = None
) -> int:
    """`p3log index`: catch the index up with the journal (and with `follow`, keep it
    up until stopped); returns how many events were indexed. Raises StoreError (one
    line) for a store it cannot index."""
    if not 0 < interval < float("inf"):
        raise StoreError(f"--interval must be a number of seconds above 0, got {interval}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(VisibleFormatter("p3log index: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        if not follow:
            with open_indexer(root, dialect=dialect) as indexer:
                return indexer.catch_up()
        try:
            return trio.run(_follow, root, interval, dialect)
        except BaseExceptionGroup as group:  # _follow's nursery wraps what it raises
            raise _sole(group) from None
    except (duckdb.Error, OSError) as exc:
        if follow:
            # Perhaps passing (a full disk): one line, and exit 1, which the tap
            # restarts; a refusal of the store (StoreError) exits 2, which it does not.
            logger.error("cannot index %s: %s", root, first_line(exc))
            raise SystemExit(1) from None
        raise StoreError(f"cannot index {root}: {first_line(exc)}") from exc


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a group holds (a refusal is one plain line, not a traceback
    of the group), or the group itself if it holds more."""
    leaves = list(_leaves(group))
    return leaves[0] if len(leaves) == 1 else group


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


async def _follow(root: Path, interval: float, dialect: Dialect | None) -> int:
    layout, _ = open_layout(root, create=False)
    moved = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, ExitStack() as held:
        stop = trio.Event()
        async with trio.open_nursery() as watchers:
            watchers.start_soon(_stop_on_signal, signals, stop)
            if stat.S_ISFIFO(os.fstat(0).st_mode):
                watchers.start_soon(_stop_at_end_of_stdin, stop)
            # An indexer still catching up (a killed tap's) holds index.lock for a while;
            # a notebook holds DuckDB's lock: either way, wait for it, saying so once.
            locked = await _when_free(lambda: _hold(held, index_lock(layout)), stop)
            con = await _when_free(lambda: open_index(layout), stop) if locked else None
            if con is not None:
                held.callback(con.close)
                indexer = await trio.to_thread.run_sync(
                    lambda: Indexer(layout, con, index_followers(root, dialect))
                )
                moved = await _keep_up_until(indexer, interval, stop)
            watchers.cancel_scope.cancel()
    return moved


T = TypeVar("T")


def _hold(held: ExitStack, lock: AbstractContextManager[None]) -> bool:
    held.enter_context(lock)
    return True


async def _when_free(attempt: Callable[[], T], stop: trio.Event) -> T | None:
    """`attempt()`, again every second while another process has what it takes; tried
    once more when stopped (None: still taken then, and the next indexer catches up)."""
    said = False
    while True:
        try:
            return attempt()
        except StoreBusy as busy:
            what = busy.what if isinstance(busy, IndexInUse) else str(busy)
            if stop.is_set():
                logger.warning("%s: the index catches up when the store is next opened", what)
                return None
            if not said:
                logger.warning("%s: indexing when it is free", what)
                said = True
        with trio.move_on_after(_BUSY_RETRY_SECONDS):
            await stop.wait()


async def _keep_up_until(indexer: Indexer, interval: float, stop: trio.Event) -> int:
    """Catch up at each wake-up with what was journaled then, sleep `interval`; once
    stopped, catch up one last time (the drain)."""
    moved = 0
    while not stop.is_set():
        moved += await trio.to_thread.run_sync(indexer.catch_up)
        with trio.move_on_after(interval):
            await stop.wait()
    return moved + await trio.to_thread.run_sync(indexer.catch_up)


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for _ in signals:
        stop.set()


async def _stop_at_end_of_stdin(stop: trio.Event) -> None:
    """Stop when the pipe on stdin ends: the tap closed it, or died."""
    stream = trio.lowlevel.FdStream(os.dup(0))
    async with stream:
        while await stream.receive_some(4096):
            pass
    stop.set()
