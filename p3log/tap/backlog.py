"""What one peer has sent that the tap has read but not yet forwarded (fsync mode).

The reader of a direction keeps reading while the forwarder waits for an fsync, and
the forwarder takes everything read so far at once, so many messages share one
fsync. The backlog is bounded in messages and in bytes: a reader waits for room
before it reads again, so a peer that outpaces the disk or the other side is held
back by TCP rather than by the tap's memory.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

# Enough for one connection to pass 4,000 messages/s each way at 4 ms per fsync (more
# than the relay's CPU allows); few enough that a saturated tap (messages arriving
# faster than it can relay them) adds little queueing to their latency: a deeper
# backlog only waits longer, it is not relayed faster.
BACKLOG_MESSAGES = 16
# ~1 KB messages never reach it; frames of up to 1 MiB do, a few at a time.
BACKLOG_BYTES = 1024 * 1024

T = TypeVar("T")


class Backlog(Generic[T]):
    """A FIFO between one reader (`wait_for_room`, then `put`) and one taker (`take_all`)."""

    def __init__(self, messages: int = BACKLOG_MESSAGES, size: int = BACKLOG_BYTES) -> None:
        self._items: deque[T] = deque()
        self._bytes = 0
        self._max_items = messages
        self._max_bytes = size
        self._changed = trio.lowlevel.ParkingLot()

    async def wait_for_room(self) -> None:
        """Return once the backlog holds less than its bounds (at once if it does)."""
        while len(self._items) >= self._max_items or self._bytes >= self._max_bytes:
            await self._changed.park()

    def put(self, item: T, size: int) -> None:
        """Add an item; never waits (the reader waited for room before it read it), so
        an item read is never lost to a cancellation between reading and queuing."""
        self._items.append(item)
        self._bytes += size
        self._changed.unpark_all()

    async def take_all(self) -> list[T]:
        """Everything put so far, oldest first; waits for at least one item."""
        while not self._items:
            await self._changed.park()
        return self.take_now()

    def take_now(self) -> list[T]:
        """Everything put so far, oldest first (none if empty); never waits."""
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        self._changed.unpark_all()
        return items
