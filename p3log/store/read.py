"""The read path: a DuckDB connection over a store's views, for SQL and notebooks.

DuckDB lets one process write a database file or many read it, never both. While
no process records into the store or indexes it, `open_store` brings the index level
with the journal (a recording or an indexer killed with SIGKILL leaves it behind)
holding index.lock only, as `p3log index` does, then opens the index read-only.
writer.lock is held only for the moment it takes to clear what a killed writer left
(a torn tail, a half import), so a tap started while a reader levels a long backlog
records at once (its indexer waits for index.lock). While either lock is held (a tap recording, its
indexer running), the index file is the indexer's, and `open_store` reads live
instead (`live.py`): sealed Parquet segments plus the journal's tail, in an
in-memory database.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from p3log.store.errors import StoreBusy
from p3log.store.index import connect
from p3log.store.indexer import Indexer, IndexFollower, index_open_error, open_index
from p3log.store.journal import discard_incoming, open_journal
from p3log.store.layout import index_lock, open_layout, writer_lock
from p3log.store.live import open_live


def open_store(
    root: str | Path,
    followers: Sequence[IndexFollower] = (),
    live_followers: Sequence[IndexFollower] = (),
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with every view of the store at `root`.

    Idle store: the index, read-only, after it and its `followers` caught up with
    the journal. Store being recorded: a live in-memory view of it, which each of
    `live_followers` then brings up to date (the projections fold the tail).
    """
    root = Path(root)
    layout, _ = open_layout(root, create=False)
    try:
        with writer_lock(layout):
            # What a killed writer left (a torn tail, a half import) is cleared as its
            # next writer would, in moments; the levelling, which can take long, holds
            # index.lock only: a tap may start meanwhile.
            discard_incoming(layout.journal_dir)
            open_journal(layout.journal_dir).close()
        with index_lock(layout):
            index = open_index(layout)
            try:
                Indexer(layout, index, followers).catch_up()
            finally:
                index.close()
        try:
            return connect(layout.index_path, read_only=True)
        # A recorder took the store since (DuckDB's lock), or this process already
        # holds the index read-only (DuckDB refuses a second, writable connection).
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            raise index_open_error(layout, exc) from exc
    # A damaged index is StoreCorrupt, never taken for a busy store: it propagates.
    except StoreBusy:
        con = open_live(root)
        for follower in live_followers:
            follower.follow(con)
        return con
