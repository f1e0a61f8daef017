"""The index writer: the trio task that moves journaled events into DuckDB.

Recording code calls `EventLog.record_*` on the trio thread (journal only, fast);
the writer wakes every `interval`, takes the pending record lines and inserts them
in bounded batches on a worker thread, so DuckDB never blocks the event loop.
Cancelling it (shutdown) inserts whatever is still pending before it returns.

Backpressure: if DuckDB falls behind, pending lines pile up in memory. Recorders
call `wait_for_room()` after recording; once `max_pending` lines wait, it blocks
until the writer has inserted a batch. Memory stays bounded by `max_pending` lines,
and a recorder is delayed at most by one batch insert (see docs/tap.md).
"""

from __future__ import annotations

import logging

import duckdb
import trio

from p3log.store.log import EventLog

logger = logging.getLogger("p3log")

DEFAULT_MAX_PENDING = 8_192


class IndexWriter:
    def __init__(
        self, log: EventLog, *, interval: float = 0.5, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        self._log = log
        self._interval = interval
        self._max_pending = max_pending
        self._progress = trio.Event()  # set (and replaced) after every batch insert
        self._hurry = trio.Event()  # set when a recorder waits for room
        self._failed = False  # after a failed insert the index waits for the next open

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                with trio.move_on_after(self._interval):
                    await self._hurry.wait()
                self._hurry = trio.Event()
                await self._insert_pending()
        finally:
            with trio.CancelScope(shield=True):
                await self._insert_pending()

    async def wait_for_room(self) -> None:
        """Return at once unless `max_pending` lines wait for the index; then wait."""
        while self._log.pending_count >= self._max_pending:
            self._hurry.set()
            await self._progress.wait()

    async def _insert_pending(self) -> None:
        while self._log.pending_count:
            # Shielded from taking the batch to inserting it: a cancellation (shutdown)
            # in between would drop a batch the journal has but the index never gets.
            with trio.CancelScope(shield=True):
                await self._insert_batch(self._log.take_pending())
            self._progress.set()
            self._progress = trio.Event()

    async def _insert_batch(self, batch: list[bytes]) -> None:
        if self._failed:
            return
        try:
            await trio.to_thread.run_sync(self._log.index_batch, batch)
        except (duckdb.Error, OSError) as exc:
            # The journal still has every event. Inserting later batches would leave a
            # hole in the index; stop, and let the next open catch up.
            self._failed = True
            logger.error(
                "index writes are failing (%s); recording continues in the journal, "
                "and the index catches up when the store is next opened",
                str(exc).strip().splitlines()[0],
            )
