"""Reading a store while a recorder writes it.

The recorder owns the index file. A live reader builds its own in-memory DuckDB
instead: `event_log` is a view over the sealed Parquet segments (`segments.py`, scanned
through pyarrow so that a locked reader needs no file access: `readonly.py`)
and a copy of the journal's tail taken when the reader opens. Both are immutable
or append-only, so the reader takes no lock, never waits for the recorder and
never slows it down.

Staleness: a reader sees every event journaled before it opened (the recorder
journals each event before forwarding it), so it lags the link by the time since
it opened and nothing else. A record being written at that instant is left for the
next reader (`ignore_errors` reads a torn last line as NULLs, which are dropped).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from p3log.store.index import (
    EVENTS_VIEW_DDL,
    RECORDS_AS_ROWS,
    connect,
    create_event_table,
    create_schema,
    journal_relation_sql,
)
from p3log.store.layout import open_layout
from p3log.store.readonly import sealed_events_source
from p3log.store.segments import sealed_segments


def open_live(root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose `events` are the store's as of now."""
    layout, _ = open_layout(root, create=False)
    segments = sealed_segments(root)
    sealed = segments[-1].last_seq if segments else 0
    con = connect(None)
    tail = journal_relation_sql(layout.journal_dir, after_seq=sealed, ignore_errors=True)
    if tail is None:  # nothing journaled yet: an empty store
        create_schema(con)
        return con
    sources = []
    if segments:
        sources.append(sealed_events_source(con, [segment.path for segment in segments]))
    create_event_table(con, "journal_tail")
    con.execute(
        f"INSERT INTO journal_tail {RECORDS_AS_ROWS} FROM ({tail}) "
        "WHERE seq IS NOT NULL ORDER BY seq"
    )
    sources.append("SELECT * FROM journal_tail")
    con.execute(f"CREATE VIEW event_log AS {' UNION ALL '.join(sources)}")
    con.execute(EVENTS_VIEW_DDL)
    return con
