"""The indexer: the one writer of `index.duckdb`, following the journal.

Whoever holds `index.lock` owns the DuckDB connection and indexes what the journal
holds beyond the index's head (`tail.py` reads it): the tap's indexer process
(`p3log index --follow`), or a recorder that indexes in its own process (`EventLog`
with its index: an import, `pos --store`, a replay run, the demo).

Cadence (`keep_up`): at each wake-up `catch_up` inserts what the journal held when it
woke, no more, in batches of up to INDEX_BATCH_LINES lines (one Arrow table, one
transaction each), lets the followers (projections, sealed segments, snapshots)
follow once, then the loop sleeps `interval`. So under steady load the index costs
a few large batches a second, not a stream of tiny ones; only a stop drains.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Protocol

import duckdb
import pyarrow as pa
import trio

from p3log.store.errors import StoreBusy, StoreCorrupt, StoreError
from p3log.store.event import GENESIS_HASH
from p3log.store.index import (
    WRITER_CHECKPOINT_THRESHOLD,
    WRITER_THREADS,
    connect,
    create_schema,
    indexed_head,
    insert_records,
    query_one,
)
from p3log.store.layout import StoreLayout
from p3log.store.tail import JournalTail

logger = logging.getLogger("p3log")

# Lines per index insert: large enough to amortise a DuckDB transaction, small
# enough that parsing and inserting a batch stays within a few tens of MB.
INDEX_BATCH_LINES = 4096
# How long the indexer sleeps between wake-ups (`p3log index --interval`).
INDEX_INTERVAL = 0.5


class IndexFollower(Protocol):
    """Tables derived from the index that keep up with it (the projections)."""

    def follow(self, index: duckdb.DuckDBPyConnection) -> object:
        """Bring the derived tables level with the events in `index`."""
        ...


class Indexer:
    """Moves journaled events into the index, and lets its followers catch up."""

    def __init__(
        self,
        layout: StoreLayout,
        index: duckdb.DuckDBPyConnection,
        followers: Sequence[IndexFollower] = (),
    ) -> None:
        """`index` is an open, writable connection whose schema exists; call with
        index.lock held."""
        self.layout = layout
        self.index = index
        self._followers = list(followers)
        self._tail = self._follow_from_head()

    def _follow_from_head(self) -> JournalTail:
        head = indexed_head(self.index)
        row = query_one(self.index, "SELECT hash FROM event_log WHERE seq = ?", [head])
        return JournalTail(self.layout.journal_dir, head, str(row[0]) if row else GENESIS_HASH)

    def resync(self) -> None:
        """The index grew by other means (an import ingests its segment in one go):
        follow the journal from the index's new head."""
        self._tail = self._follow_from_head()

    def catch_up(self) -> int:
        """Insert every event journaled when this call began (not those after: the
        cadence), then let the followers follow; returns how many were inserted.
        Raises StoreCorrupt for a journal that does not continue the index."""
        until = self._tail.mark()
        moved = 0
        while lines := self._tail.read(INDEX_BATCH_LINES, until):
            try:
                insert_records(self.index, lines)
            except pa.ArrowInvalid as exc:  # a line the follower's checks let through
                raise StoreCorrupt(
                    f"cannot read the journal of {self.layout.root} after seq "
                    f"{indexed_head(self.index)} ({first_line(exc)}); run p3log verify"
                ) from exc
            moved += len(lines)
        self.follow_index()
        return moved

    def follow_index(self) -> None:
        """Let each follower catch up with the index. A follower that fails is dropped
        for the life of this indexer: derived tables must never stop the index, and
        the next indexer (or `p3log rebuild`) brings them level again."""
        for follower in list(self._followers):
            try:
                follower.follow(self.index)
            except Exception as exc:
                self._followers.remove(follower)
                logger.error(
                    "projections stopped following the events (%s); they catch up when "
                    "the store is next opened, or run p3log rebuild",
                    first_line(exc),
                )


async def keep_up(
    indexer: Indexer,
    interval: float = INDEX_INTERVAL,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `catch_up` on a worker thread every `interval` seconds, so DuckDB never
    blocks the event loop; cancelled (shutdown), it catches up one last time.

    An in-process recorder runs this beside its recording (the demo's tap). A failing
    insert stops the index, not the recording: the journal has every event, and the
    next indexer catches up from it."""
    task_status.started()
    working = True
    try:
        while working:
            await trio.sleep(interval)
            working = await _catch_up(indexer)
        await trio.sleep_forever()
    finally:
        if working:
            with trio.CancelScope(shield=True):
                await _catch_up(indexer)


async def _catch_up(indexer: Indexer) -> bool:
    try:
        await trio.to_thread.run_sync(indexer.catch_up)
    except (duckdb.Error, OSError, StoreError) as exc:
        logger.error(
            "index writes are failing (%s); recording continues in the journal, "
            "and the index catches up when the store is next opened",
            first_line(exc),
        )
        return False
    return True


def open_index(layout: StoreLayout) -> duckdb.DuckDBPyConnection:
    """The index, writable, its schema made; call with index.lock held. Raises
    StoreBusy while another process has the file open (DuckDB's own lock: a notebook
    reading it), StoreCorrupt for a file that is not a DuckDB database."""
    try:
        con = connect(layout.index_path)
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise index_open_error(layout, exc) from exc
    except duckdb.Error as exc:
        raise damaged_index(layout, exc) from exc
    try:
        con.execute(f"SET threads = {WRITER_THREADS}")
        con.execute(f"SET checkpoint_threshold = '{WRITER_CHECKPOINT_THRESHOLD}'")
        create_schema(con)
    except BaseException:
        con.close()
        raise
    return con


def index_open_error(layout: StoreLayout, exc: duckdb.Error) -> StoreError:
    """Why the index file could not be opened: another process holds it (DuckDB's
    lock; it names the pid), or the file is damaged. Anything DuckDB does not call a
    lock conflict is damage, never taken for a busy store."""
    text = str(exc)
    if isinstance(exc, duckdb.ConnectionException) or "Could not set lock" in text:
        found = re.search(r"\(PID \d+\)", text)
        return IndexInUse(layout, found.group(0) if found else "")
    return damaged_index(layout, exc)


class IndexInUse(StoreBusy):
    """DuckDB's own lock refused the index: another process has it open (a notebook)."""

    def __init__(self, layout: StoreLayout, holder: str) -> None:
        self.what = f"the index of {layout.root} is open in another process {holder}".strip()
        super().__init__(f"{self.what}; close it and retry")


def damaged_index(layout: StoreLayout, exc: BaseException) -> StoreCorrupt:
    return StoreCorrupt(
        f"the index {layout.index_path} is damaged ({first_line(exc)}); delete it and the "
        "next open rebuilds it from the journal (p3log verify checks the journal)"
    )


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
