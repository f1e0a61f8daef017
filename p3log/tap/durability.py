"""When a tapped message may be forwarded, relative to its event being safe.

- `journal` (default): after the event is in the journal (one write(2)): it
  survives SIGKILL of the tap.
- `fsync`: after the journal is fsynced. Forwarders wait for the next group fsync,
  which covers every event journaled before it started, so many messages share one
  fsync: survives power loss, at the price of about one fsync of latency.
- `async`: forward first, record after. For comparison in benchmarks only: a kill
  can lose a message both peers saw.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import trio

from p3log.store.log import EventLog

logger = logging.getLogger("p3log")


class Durability(StrEnum):
    journal = "journal"
    fsync = "fsync"
    async_ = "async"


class GroupSync:
    """Group commit for the journal: one fsync per batch of waiting forwarders."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._synced_seq = 0
        self._wanted = trio.Event()
        self._done = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            target = self._log.head[0]
            try:
                await trio.to_thread.run_sync(self._log.sync)
            except OSError as exc:
                # Blocking payments on a failing disk is worse than losing the stronger
                # guarantee: say so, and release the waiters as in journal mode.
                logger.error("fsync of the journal failed (%s)", exc.strerror or exc)
            self._synced_seq = target
            self._done.set()
            self._done = trio.Event()

    async def wait_synced(self, seq: int) -> None:
        while self._synced_seq < seq:
            done = self._done
            self._wanted.set()
            await done.wait()
