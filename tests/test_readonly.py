"""A reader reads the store's views and nothing else, idle or while a recorder holds
the store: through the real `p3log sql` process and through `p3log.open_store`.

Every statement here is what an attacker at `p3log sql` (or a notebook someone else
wrote) would try: write the store's own journal or segments, read any file, change
settings, attach databases, fetch extensions, change the views."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

import p3log
from p3log.projections.snapshots import ProjectionSnapshots
from p3log.projections.store import ProjectionStore
from p3log.store.indexer import IndexFollower
from p3log.store.log import EventLog
from p3log.store.records import decode_body, decode_line
from p3log.store.segments import EventSegments, sealed_segments
from tests.test_cli import p3log as run_p3log

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sessions"
PATHS = ["idle", "live"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with sealed segments, a projection snapshot and a journal tail."""
    root = tmp_path_factory.mktemp("readonly") / "store"
    followers: list[IndexFollower] = [
        ProjectionStore(),
        EventSegments(root, seal_events=40),
        ProjectionSnapshots(root, every_events=100),
    ]
    with EventLog.open(root, followers=followers) as log:
        for name in ("demo.jsonl", "abort.jsonl"):
            for line in (FIXTURES / name).read_bytes().splitlines():
                log.record_imported(decode_body(decode_line(line)))
    assert sealed_segments(root)
    (root.parent / "outside.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    return root


@contextmanager
def held(store: Path, path: str) -> Iterator[None]:
    """The store idle, or held by a writer (as a recording tap holds it)."""
    if path == "live":
        with EventLog.open(store):
            yield
    else:
        yield


def _digests(store: Path) -> dict[str, str]:
    """Every file of the store by content, but the index, which DuckDB rewrites, and the
    lock files, which hold the pid of their last holder (a reader of an idle store
    takes both to bring the index level)."""
    return {
        str(path.relative_to(store)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(store.rglob("*"))
        if path.is_file() and not path.name.startswith("index.duckdb") and path.suffix != ".lock"
    }


def _journal(store: Path) -> Path:
    return sorted((store / "journal").glob("*.jsonl"))[0]


def _hostile(store: Path) -> list[str]:
    """Statements a reader must refuse, with the store's own files among the targets."""
    journal = _journal(store)
    segment = sealed_segments(store)[0].path
    outside = store.parent / "outside.csv"
    written = store.parent / "written.csv"
    return [
        f"COPY (SELECT 1) TO '{journal}'",
        f"COPY (SELECT 1) TO '{journal}' (FORMAT csv, USE_TMP_FILE false)",
        f"COPY (SELECT 1) TO '{segment}' (USE_TMP_FILE false)",
        f"COPY (SELECT 1) TO '{written}'",
        f"COPY events TO '{written}'",
        f"EXPORT DATABASE '{store.parent / 'exported'}'",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/passwd')",
        f"SELECT * FROM read_csv('{outside}')",
        f"SELECT * FROM '{outside}'",
        f"SELECT * FROM read_parquet('{outside}')",
        f"SELECT * FROM read_json('{journal}')",
        f"SELECT * FROM read_parquet('{segment}')",
        "SELECT * FROM glob('/etc/*')",
        f"SELECT * FROM glob('{store}/*')",
        "SET threads = 1",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET threads",
        "PRAGMA threads = 1",
        f"ATTACH '{store.parent / 'other.duckdb'}' AS other",
        "ATTACH ':memory:' AS scratch",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TABLE forged AS SELECT 1",
        "CREATE OR REPLACE VIEW events AS SELECT 1 AS seq",
        "INSERT INTO transactions SELECT * FROM transactions",
        "DELETE FROM transactions",
        "DROP VIEW events",
        "DROP TABLE transactions",
    ]


def _sql(store: Path, query: str) -> subprocess.CompletedProcess[str]:
    return run_p3log("sql", "--store", store, "--format", "csv", query)


def _counts(store: Path) -> str:
    result = _sql(
        store, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM transactions)"
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("path", PATHS)
def test_p3log_sql_refuses_every_write_file_read_setting_and_extension_in_one_line(
    store: Path, path: str
) -> None:
    before = _digests(store)
    expected = _counts(store)
    with held(store, path):
        for query in _hostile(store):
            result = _sql(store, query)
            assert result.returncode == 2, (query, result.stdout)
            assert result.stdout == "", query
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("p3log: "), (query, result.stderr)
            assert "root:" not in result.stderr  # nothing of /etc/passwd
        assert _counts(store) == expected  # the views still answer, live too
    assert _digests(store) == before
    assert not (store.parent / "written.csv").exists()
    assert not (store.parent / "other.duckdb").exists()
    assert not (store.parent / "exported").exists()
    verify = run_p3log("verify", "--store", store)
    assert verify.returncode == 0, verify.stderr


@pytest.mark.parametrize("path", PATHS)
def test_p3log_sql_runs_one_statement_and_refuses_several(store: Path, path: str) -> None:
    with held(store, path):
        result = _sql(store, "SELECT 1 AS a; SELECT 2 AS b")
        empty = _sql(store, " ; -- nothing")
    for refused in (result, empty):
        assert refused.returncode == 2
        assert refused.stdout == ""
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "one SELECT statement" in refused.stderr


@contextmanager
def _opened(store: Path, path: str) -> Iterator[duckdb.DuckDBPyConnection]:
    with held(store, path):
        con = p3log.open_store(store)
        try:
            yield con
        finally:
            con.close()


@pytest.mark.parametrize("path", PATHS)
def test_open_store_refuses_the_same_and_still_answers(store: Path, path: str) -> None:
    before = _digests(store)
    with _opened(store, path) as con:
        expected = con.execute("SELECT count(*) FROM events").fetchall()
        for query in _hostile(store):
            with pytest.raises(duckdb.Error):
                con.execute(query).fetchall()
        assert con.execute("SELECT count(*) FROM events").fetchall() == expected
        # An analyst's usual calls still work on the locked connection.
        assert len(con.sql("SELECT * FROM transactions").df()) > 0
        assert con.sql("SELECT seq FROM events ORDER BY seq").pl()["seq"][0] == 1
        assert con.sql("SELECT * FROM events").arrow().read_all().num_rows == expected[0][0]
        # A scratch table is a database of the analyst's own (docs/store.md, "Reading").
        scratch = duckdb.connect()
        scratch.register("mine", con.sql("SELECT seq, kind FROM events").arrow().read_all())
        scratch.execute("CREATE TABLE kinds AS SELECT kind, count(*) AS n FROM mine GROUP BY kind")
        assert scratch.execute("SELECT sum(n) FROM kinds").fetchall() == expected
        scratch.close()
    assert _digests(store) == before
    assert not (store.parent / "written.csv").exists()


@pytest.mark.parametrize("path", PATHS)
def test_a_second_reader_in_the_same_process_is_locked_too(store: Path, path: str) -> None:
    """DuckDB shares one instance between connections to a file: both stay locked."""
    with _opened(store, path) as first, _opened(store, "idle") as second:
        for con in (first, second):
            assert con.execute("SELECT current_setting('enable_external_access')").fetchall() == [
                (False,)
            ]
            with pytest.raises(duckdb.Error):
                con.execute("SELECT * FROM read_text('/etc/passwd')").fetchall()
