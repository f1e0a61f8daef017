"""`p3log.open_store(DIR)` for analysts: every view, as pandas and polars DataFrames.

Both while the store is idle and while a recorder holds it (the live path: an
in-memory DuckDB over sealed segments and the journal's tail), the frames have
the contract's columns with their types: instants tz-aware UTC, amounts numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pytest
from pandas.testing import assert_frame_equal
from polars.testing import assert_frame_equal as assert_pl_frame_equal

import p3log
from p3log.projections.rows import TABLES
from p3log.store.log import EventLog
from p3log.store.transfer import import_jsonl

SESSIONS = Path(__file__).parent.parent / "fixtures" / "sessions"
# docs/architecture.md, "Contract"
CONTRACT = {
    "events": "seq, session_id, sender, kind, msg_type, tag, resource, status, recorded_at, "
    "mono_ns, payload, prev_hash, hash",
    "transactions": "transaction_key, session_id, tag, operation, resource, requested_at, "
    "completed_at, outcome, transaction_identifier, amount, currency, abort_requested, "
    "update_count, action_count, duration_ms",
    "abort_windows": "transaction_key, opened_at, closed_at, duration_ms",
    "action_waits": "transaction_key, action, asked_at, answered_at, answer, wait_ms",
    "aborts": "transaction_key, requested_at, was_abortable, response_status, answered_at",
    "protocol_findings": "session_id, transaction_key, seq, rule, detail",
}
VIEWS = ("events", *(table.name for table in TABLES))
INSTANTS = ("requested_at", "completed_at")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api") / "store"
    for name in ("abort", "signature", "amend", "dropped_connection"):
        import_jsonl(root, SESSIONS / f"{name}.jsonl")
    p3log.open_store(root).close()  # project once
    return root


@contextmanager
def opened(store: Path, *, live: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """`p3log.open_store`, with a recorder holding the store if `live`."""
    if live:
        with EventLog.open(store):  # the writer lock: readers read live
            con = p3log.open_store(store)
            try:
                assert not _reads_the_index(con, store)  # read live, not from the index
                yield con
            finally:
                con.close()
        return
    con = p3log.open_store(store)
    try:
        assert _reads_the_index(con, store)  # the index, read-only
        yield con
    finally:
        con.close()


def _reads_the_index(con: duckdb.DuckDBPyConnection, store: Path) -> bool:
    """Whether `con` reads the store's index (a live reader reads its own read-only copy)."""
    ((path,),) = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return path == str(store / "index.duckdb")


@pytest.mark.parametrize("live", [False, True], ids=["idle", "live"])
def test_transactions_as_pandas(store: Path, live: bool) -> None:
    with opened(store, live=live) as con:
        df = con.sql("SELECT * FROM transactions ORDER BY request_seq").df()
    assert isinstance(df, pd.DataFrame)
    assert len(df) > 5
    assert list(df.columns[:15]) == CONTRACT["transactions"].split(", ")
    for column in INSTANTS:
        dtype = df[column].dtype
        assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC", column
    assert pd.api.types.is_float_dtype(df["amount"])  # DECIMAL(19,4) becomes float64
    assert pd.api.types.is_float_dtype(df["duration_ms"])
    assert pd.api.types.is_bool_dtype(df["abort_requested"])
    assert pd.api.types.is_integer_dtype(df["update_count"])
    assert df["amount"].notna().any() and (df["amount"].dropna() > 0).all()
    assert (df["completed_at"].dropna() >= df["requested_at"][df["completed_at"].notna()]).all()
    assert set(df["outcome"]) >= {"APPROVED", "INCOMPLETE"}


@pytest.mark.parametrize("live", [False, True], ids=["idle", "live"])
def test_transactions_as_polars(store: Path, live: bool) -> None:
    with opened(store, live=live) as con:
        frame = con.sql("SELECT * FROM transactions ORDER BY request_seq").pl()
    assert isinstance(frame, pl.DataFrame)
    assert frame.columns[:15] == CONTRACT["transactions"].split(", ")
    for column in INSTANTS:
        assert frame.schema[column] == pl.Datetime("us", "UTC"), column
    assert frame.schema["amount"] == pl.Decimal(19, 4)  # exact, as in the store
    assert isinstance(frame["amount"].drop_nulls()[0], Decimal)
    assert frame.schema["duration_ms"] == pl.Float64
    assert frame.schema["abort_requested"] == pl.Boolean


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_is_the_same_frame_live_and_idle(store: Path, view: str) -> None:
    query = f"SELECT * FROM {view} ORDER BY ALL"
    with opened(store, live=False) as con:
        idle_pd, idle_pl = con.sql(query).df(), con.sql(query).pl()
    with opened(store, live=True) as con:
        live_pd, live_pl = con.sql(query).df(), con.sql(query).pl()
    assert len(idle_pd) > 0
    if view in CONTRACT:
        names = CONTRACT[view].split(", ")
        assert list(idle_pd.columns[: len(names)]) == names
    assert_frame_equal(live_pd, idle_pd)
    assert_pl_frame_equal(live_pl, idle_pl)
