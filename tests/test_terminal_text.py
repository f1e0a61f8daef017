"""Recorded text in the terminal is what was recorded: never Rich markup, never an emoji
code, never a control sequence the terminal obeys (`p3log.visible`)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import p3log
from p3log.projections.timeline import Marker, Timeline, load_timeline
from p3log.render import OutputFormat, TimelineFormat, render_rows, render_timeline
from p3log.store.log import EventLog
from p3log.store.records import decode_body, decode_line
from p3log.visible import visible
from tests.test_cli import p3log as run_p3log

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sessions"
# The abort fixture's first transaction, whose tag the hostile store replaces.
TAG = "8c940ea5-8c65-4944-8364-dbf5df6bafe3"
HOSTILE = (
    "[link=file:///etc]t2[/link] postgres:x:101 [bold red]x[/] :smile: "
    "\x1b]8;;file:///etc\x1b\\link\x1b]8;;\x1b\\ \x1b[2J\x1b[1;1H\r\x07\x08\u202e\x9b"
)
# Pieces an attacker puts in a recorded value, and anything else.
FRAGMENTS = [
    "[link=file:///etc]",
    "[/link]",
    "[red]",
    "[/]",
    "[bold",
    "]",
    ":x:",
    ":smile:",
    ":",
    "\x1b[2J",
    "\x1b]8;;http://127.0.0.1/\x1b\\",
    "\x1b",
    "\r",
    "\n",
    "\t",
    "\x07",
    "\x08",
    "\x00",
    "\x7f",
    "\x9b",
    "\u202e",
    "\u2066",
    "\u2028",
    "\u200b",
    "\ufeff",
    "\\",
    "x",
    "é",
    "語",
]
hostile_text = st.lists(
    st.sampled_from(FRAGMENTS) | st.text(max_size=4), min_size=1, max_size=12
).map("".join)


def _console() -> tuple[Console, io.StringIO]:
    """A console like p3log's, wide enough that no cell folds."""
    out = io.StringIO()
    console = Console(
        file=out,
        width=100_000,
        soft_wrap=True,
        markup=True,  # the render functions must not rely on the console's settings
        emoji=True,
        highlight=True,
        color_system=None,
    )
    return console, out


def _assert_shown(text: str, output: str) -> None:
    assert visible(text).strip() in output
    # Nothing a terminal obeys: only the table's own newlines.
    assert all(char.isprintable() or char == "\n" for char in output)


@settings(max_examples=300, deadline=None)
@given(hostile_text)
def test_a_table_shows_every_recorded_string_escaped_and_nothing_else(text: str) -> None:
    console, out = _console()
    render_rows(console, ["value", text], [(text, 1), ([text, "b"], None)], OutputFormat.table)
    _assert_shown(text, out.getvalue())


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Timeline:
    root = tmp_path_factory.mktemp("timeline") / "store"
    with EventLog.open(root) as log:
        for line in (FIXTURES / "abort.jsonl").read_bytes().splitlines():
            log.record_imported(decode_body(decode_line(line)))
    con = p3log.open_store(root)
    try:
        return load_timeline(con, f"7b4e6c18b2414fd3:{TAG[:8]}")
    finally:
        con.close()


@settings(max_examples=150, deadline=None)
@given(hostile_text)
def test_a_timeline_shows_every_recorded_string_escaped_and_nothing_else(
    timeline: Timeline, text: str
) -> None:
    txn = timeline.transaction._replace(
        transaction_key=f"s:{text}", tag=text, resource=text, transaction_identifier=text
    )
    first, *rest = timeline.events
    event = attrs.evolve(first, summary=text, msg_type=text, markers=(Marker("abort", text),))
    console, out = _console()
    render_timeline(
        console,
        attrs.evolve(timeline, transaction=txn, events=(event, *rest)),
        TimelineFormat.table,
    )
    _assert_shown(text, out.getvalue())


# --- the commands, as a user runs them, over a store a hostile peer recorded into --------


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The abort fixture, with its first transaction's tag replaced by HOSTILE."""
    root = tmp_path_factory.mktemp("hostile") / "store"
    encoded = json.dumps(HOSTILE)[1:-1]
    with EventLog.open(root) as log:
        for line in (FIXTURES / "abort.jsonl").read_bytes().splitlines():
            body = decode_body(decode_line(line))
            if body.kind == "message" and body.payload is not None:
                body = attrs.evolve(body, payload=body.payload.replace(TAG, encoded), raw=None)
            log.record_imported(body)
    return root


def _p3log(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_p3log(*args, env={"COLUMNS": "100000"})  # wide enough that no cell folds


def _key(store: Path) -> str:
    con = p3log.open_store(store)
    try:
        rows = con.execute(
            "SELECT transaction_key FROM transactions WHERE tag = ?", [HOSTILE]
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 1
    return str(rows[0][0])


def test_show_and_sql_print_the_recorded_tag_as_it_is(hostile_store: Path) -> None:
    shown = visible(HOSTILE)
    for args in (
        ("show", "--store", hostile_store, _key(hostile_store)),
        ("sql", "--store", hostile_store, "SELECT DISTINCT tag FROM events WHERE tag LIKE '[%'"),
    ):
        result = _p3log(*args)
        assert result.returncode == 0, result.stderr
        assert shown in result.stdout, args
        assert "[link=file:///etc]t2[/link]" in result.stdout  # markup, shown as text
        assert "postgres:x:101" in result.stdout and ":smile:" in result.stdout  # no emoji
        assert all(char.isprintable() or char == "\n" for char in result.stdout), args


def test_csv_and_json_keep_the_recorded_tag_exactly(hostile_store: Path) -> None:
    query = "SELECT DISTINCT tag FROM events WHERE tag LIKE '[%'"
    as_json = _p3log("sql", "--store", hostile_store, "--format", "json", query)
    assert json.loads(as_json.stdout) == [{"tag": HOSTILE}]
    as_csv = subprocess.run(
        [sys.executable, "-m", "p3log", "sql", "--store", hostile_store, "--format", "csv", query],
        capture_output=True,
        timeout=120,
    )
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout.decode(), newline="")))
    assert rows == [["tag"], [HOSTILE]]  # control characters and all


def test_an_error_line_shows_a_store_path_as_it_is(tmp_path: Path) -> None:
    store = tmp_path / "[red]no\x1b[2Jstore:x:"
    result = _p3log("sql", "--store", store, "SELECT 1")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert visible(str(store)) in line
    assert "\x1b" not in result.stderr
