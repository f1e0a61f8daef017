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

from p3log.store.chain import ROWS_AS_RECORDS, chain_problem, hashes_sql
from p3log.store.errors import StoreCorrupt
from p3log.store.index import (
    EVENTS_VIEW_DDL,
    RECORDS_AS_ROWS,
    connect,
    create_event_table,
    create_schema,
    journal_relation_sql,
    query_one,
    sql_string,
)
from p3log.store.layout import open_layout
from p3log.store.readonly import sealed_events_source
from p3log.store.segments import Segment, sealed_segments, segment_problem


def open_live(root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose `events` are the store's as of now.

    Refuses (StoreCorrupt) sealed segments that do not match the chain: their rows
    must chain from seq 1, each hash recomputed from its content, and the last one's
    hash must be the journal's at that seq. That reads the segments once, never the
    journal before the tail; `p3log verify` checks everything else.
    """
    layout, meta = open_layout(root, create=False)
    segments = sealed_segments(root)
    sealed = segments[-1].last_seq if segments else 0
    con = connect(None)
    # From the last sealed seq on: its hash in the journal is what the segments must end in.
    tail = journal_relation_sql(
        layout.journal_dir, after_seq=max(sealed - 1, 0), ignore_errors=True
    )
    if tail is None:  # nothing journaled yet: an empty store
        create_schema(con)
        return con
    sources = []
    create_event_table(con, "journal_tail")
    con.execute(
        f"INSERT INTO journal_tail {RECORDS_AS_ROWS} FROM ({tail}) "
        "WHERE seq IS NOT NULL ORDER BY seq"
    )
    if segments:
        _check_segments(con, segments, meta.store_id)
        sources.append(sealed_events_source(con, [segment.path for segment in segments]))
        con.execute(f"DELETE FROM journal_tail WHERE seq <= {int(sealed)}")
    sources.append("SELECT * FROM journal_tail")
    con.execute(f"CREATE VIEW event_log AS {' UNION ALL '.join(sources)}")
    con.execute(EVENTS_VIEW_DDL)
    return con


def _check_segments(con: duckdb.DuckDBPyConnection, segments: list[Segment], store_id: str) -> None:
    for segment in segments:
        columns = segment_problem(con, str(segment.path), store_id)
        if columns is not None:
            raise _refused(segment, columns)
    files = ", ".join(sql_string(str(segment.path)) for segment in segments)
    last = segments[-1]
    try:
        con.execute(
            "CREATE TEMP TABLE sealed_hashes AS "
            f"{hashes_sql(f'{ROWS_AS_RECORDS} FROM read_parquet([{files}])')}"
        )
    except duckdb.Error as exc:  # damaged beyond its metadata; DuckDB names the file
        raise StoreCorrupt(
            f"a sealed segment under {last.path.parent} cannot be read "
            f"({str(exc).strip().splitlines()[0]}); not reading it: run p3log verify"
        ) from exc
    problem = chain_problem(con, "sealed_hashes", "segments")
    if problem is not None:
        at = next((s for s in segments if s.first_seq <= problem.seq <= s.last_seq), last)
        raise _refused(at, f"at seq {problem.seq}, {problem.reason}")
    ends = query_one(
        con,
        "SELECT (SELECT max(seq) FROM sealed_hashes), "
        "(SELECT hash FROM sealed_hashes WHERE seq = ?) = "
        "(SELECT hash FROM journal_tail WHERE seq = ?)",
        [last.last_seq, last.last_seq],
    )
    if ends != (last.last_seq, True):
        raise _refused(last, f"its seq {last.last_seq} is not the journal's event")


def _refused(segment: Segment, reason: str) -> StoreCorrupt:
    return StoreCorrupt(
        f"{segment.path} does not match the store's hash chain ({reason}); "
        "not reading it: run p3log verify"
    )
