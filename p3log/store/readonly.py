"""What SQL a reader may run: the store's views, and nothing outside them.

Every connection p3log hands to a user (`p3log sql`, `show`, `transactions`,
`findings`, and `p3log.open_store` in notebooks) passes through `lock_down`, which
leaves DuckDB able to read the database it was opened on and nothing else:

- no file can be read, written, listed or globbed, and no URL fetched
  (`enable_external_access = false` with no allowed paths or directories:
  DuckDB's allow-lists grant writing as well as reading, so none is granted);
- DuckDB spills nothing to disk (`temp_directory = ''`, which DuckDB would
  otherwise let a query write into);
- no extension is installed or loaded, automatically or by `INSTALL`/`LOAD`;
- no setting changes (`lock_configuration`), except the session's `TimeZone`,
  which only changes how instants are shown;
- the database itself is read-only: the idle index is opened `read_only`, and the
  live reader's in-memory database (`live.py`) is copied into a private read-only
  file, so `CREATE`, `INSERT`, `DROP`, `ATTACH` fail on the store's tables and views.

The sealed Parquet segments a live reader reads are scanned through pyarrow
(`sealed_events_source`), not through DuckDB's file system, so the lockdown does
not need to allow (and with it, let a query overwrite) any file of the store.

`p3log sql` in addition runs exactly one SELECT (`select_statement`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow.dataset as pa_dataset

from p3log.store.errors import StoreError
from p3log.store.index import EVENT_SCHEMA, connect, sql_string

# The settings a locked reader runs with, in the order DuckDB accepts them (the file
# system settings only change while external access is still on).
_LOCKDOWN = (
    ("allowed_configs", "['TimeZone']"),
    ("allowed_directories", "[]"),
    ("allowed_paths", "[]"),
    ("temp_directory", "''"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("enable_external_access", "false"),
    ("lock_configuration", "true"),
)
# What a locked reader reports for each. (DuckDB adds the database's own file and
# its WAL names to `allowed_paths` by itself, and refuses a COPY to any of them.)
_LOCKED_VALUES = {
    "allowed_directories": "[]",
    "temp_directory": "",
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
    "allow_community_extensions": "false",
    "enable_external_access": "false",
    "lock_configuration": "true",
}

# The name a live reader's sealed segments are scanned under, and the variable that
# remembers their files (so that a locked copy scans exactly the same ones).
SEALED_EVENTS = "sealed_events"
_SEALED_FILES = "p3log_sealed_files"


class StatementRefused(StoreError):
    """SQL that `p3log sql` does not run."""


def select_statement(sql: str) -> str:
    """`sql` if it is exactly one SELECT (FROM-first, WITH, VALUES, DESCRIBE, SHOW and
    SUMMARIZE are SELECTs); otherwise one line saying why not."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise StatementRefused(str(exc).strip().splitlines()[0]) from None
    if len(statements) != 1:
        raise StatementRefused(
            f"a query is one SELECT statement; this one has {len(statements)} statements"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rpartition(".")[2]
        raise StatementRefused(
            f"a query may only SELECT (the store is read-only); this is a {name} statement"
        )
    return sql


def sealed_events_source(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> str:
    """SQL for the rows of the sealed segment `files`, scanned by pyarrow (see the
    module's doc), for a live reader's `event_log`."""
    con.register(SEALED_EVENTS, _segments_dataset([str(path) for path in files]))
    con.execute(f"SET VARIABLE {_SEALED_FILES} = ?", [[str(path) for path in files]])
    return f"SELECT * FROM {SEALED_EVENTS}"


def lock_down(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A connection that reads only the views of `con`'s database (see the module's
    doc). A read-only database is locked in place; an in-memory one (a live reader)
    is copied into a private read-only file first, and `con` closed."""
    if _in_memory(con):
        con = _frozen_copy(con)
    _apply_lockdown(con)
    return con


def _in_memory(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT path IS NULL FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return bool(row and row[0][0])


def _apply_lockdown(con: duckdb.DuckDBPyConnection) -> None:
    # DuckDB shares one database instance between the connections of a process that
    # open the same file: a second reader finds it locked already, and checks it.
    if _setting(con, "lock_configuration") != "true":
        for name, value in _LOCKDOWN:
            con.execute(f"SET {name} = {value}")
    wrong = [name for name, value in _LOCKED_VALUES.items() if _setting(con, name) != value]
    if wrong:  # fail closed: never hand out a reader that could touch files
        raise StoreError(f"cannot open a read-only reader: DuckDB kept {', '.join(wrong)}")


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    rows = con.execute("SELECT current_setting(?)", [name]).fetchall()
    value = rows[0][0]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value)


def _frozen_copy(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """`con`'s database as a read-only database of its own, with the same sealed
    segments registered. The copy lives in a private directory that is removed once
    DuckDB has it open (DuckDB reads it through its open descriptor)."""
    files = _sealed_files(con)
    try:
        directory = Path(tempfile.mkdtemp(prefix="p3log-live-"))
        path = directory / "live.duckdb"
        try:
            con.execute(f"ATTACH {sql_string(str(path))} AS p3log_frozen")
            con.execute("COPY FROM DATABASE memory TO p3log_frozen")
            con.execute("DETACH p3log_frozen")
            frozen = connect(path, read_only=True)
        finally:
            con.close()
            shutil.rmtree(directory, ignore_errors=True)
    except (duckdb.Error, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"cannot open a live reader (a private copy in {tempfile.gettempdir()}): {reason}"
        ) from exc
    if files is not None:
        frozen.register(SEALED_EVENTS, _segments_dataset(files))
    return frozen


def _sealed_files(con: duckdb.DuckDBPyConnection) -> list[str] | None:
    value = con.execute(f"SELECT getvariable('{_SEALED_FILES}')").fetchall()[0][0]
    return None if value is None else [str(item) for item in value]


def _segments_dataset(files: list[str]) -> pa_dataset.Dataset:
    """The segments' event columns: their `store_id` (checked by the live reader) is
    left out, and segments sealed before it read alike."""
    return pa_dataset.dataset(files, format="parquet", schema=EVENT_SCHEMA)
