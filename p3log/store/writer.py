"""The index writer: the trio task that moves journaled events into DuckDB.

Recording code calls `EventLog.record_*` on the trio thread (journal only, fast);
this task wakes every `interval`, takes the pending events and inserts them as one
batch on a worker thread, so DuckDB never blocks the event loop. Cancelling it
(shutdown) inserts whatever is still pending before it returns.
"""

from __future__ import annotations

import trio

from p3log.store.index import insert_records
from p3log.store.log import EventLog


async def index_writer(
    log: EventLog,
    *,
    interval: float = 0.05,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    try:
        while True:
            await trio.sleep(interval)
            await _insert_pending(log)
    finally:
        with trio.CancelScope(shield=True):
            await _insert_pending(log)


async def _insert_pending(log: EventLog) -> None:
    while batch := log.take_pending():
        await trio.to_thread.run_sync(insert_records, log.index, batch)
