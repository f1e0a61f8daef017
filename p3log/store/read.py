"""The read path: a DuckDB connection over a store's views, for SQL and notebooks.

DuckDB lets one process write a database file or many read it, never both. While
no process records into the store, `open_store` first brings the index level with
the journal (a recording killed with SIGKILL leaves the index behind), then opens
the index read-only. While a tap records, the index file is the writer's; reading
alongside a live recording is the job of the live read path (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from p3log.store.errors import StoreBusy
from p3log.store.index import connect
from p3log.store.log import EventLog, IndexFollower


def open_store(
    root: str | Path, followers: Sequence[IndexFollower] = ()
) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection with every view of the store at `root`, after
    the index (and its `followers`) caught up with the journal."""
    root = Path(root)
    # The writer lock, briefly: catch up.
    with EventLog.open(root, create=False, followers=followers) as log:
        index_path = log.layout.index_path
    try:
        return connect(index_path, read_only=True)
    except duckdb.IOException as exc:
        raise StoreBusy(f"store {root} is open for recording by another process") from exc
