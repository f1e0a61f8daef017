"""The command line as a user meets it: help that reads cleanly, one name per idea (the
old spellings still accepted, hidden), bad values refused in one line, a busy port that
creates nothing, connection failures that say why, tables that survive a pipe, and a
demo that starts fresh (docs/architecture.md, "Conventions")."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from rich.console import Console
from typer.testing import CliRunner, Result

from p3log.cli import app
from p3log.cli import core as cli
from p3log.net.channel import parse_listen
from p3log.projections.listing import (
    TRANSACTION_COLUMNS,
    Selection,
    list_findings,
    list_transactions,
)
from p3log.projections.opening import open_store
from p3log.render import OutputFormat, render_findings, render_rows
from p3log.report import build_report
from p3log.store.transfer import import_jsonl
from tests.processes import run_p3log

DEMO_TRANSACTIONS = 16
TRANSACTION_KEY = TRANSACTION_COLUMNS.index("transaction_key")


p3log = run_p3log


def one_line(result: subprocess.CompletedProcess[str], expected: str) -> str:
    """The one `p3log: …` line of a refused command (exit 2), with `expected` in it."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("p3log: ") and expected in lines[0], lines[0]
    return lines[0]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def every_command() -> Iterator[list[str]]:
    """The argv prefix of every command and group, `p3log` itself first."""
    root = typer.main.get_command(app)

    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if not sub.hidden:
                yield from walk(sub, [*path, name])

    yield from walk(root, [])


COMMANDS = list(every_command())


# --- help -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv) or "p3log")
def test_help_reads_cleanly(argv: list[str]) -> None:
    result = p3log(*argv, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.search(r"Usage: .*p3log", text), text
    for noise in (
        "<bool>",
        "list[str]",
        "<list",
        "(1.0)",
        "[default: (",
        "<str>",
        "<path>",
        "<float>",
        "<int>",
    ):
        assert noise not in text, f"{noise!r} in the help of p3log {' '.join(argv)}"
    # -h is --help.
    short = p3log(*argv, "-h", env={"COLUMNS": "200"})
    assert short.returncode == 0 and short.stdout == text


def test_hidden_old_spellings_stay_out_of_the_help() -> None:
    for argv, old in (
        (["export"], "--to"),
        (["tap"], "--upstream"),
        (["replay", "drive"], "--target"),
        (["replay", "drive"], "--session"),
        (["replay", "serve"], "--session"),
        (["pos"], "--record"),
    ):
        text = p3log(*argv, "--help", env={"COLUMNS": "200"}).stdout
        assert not re.search(rf"{old}\b(?!-)", text), (argv, old)


def test_version() -> None:
    result = p3log("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"p3log \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


# --- one name per idea; the old spellings still work ------------------------------------


def test_export_out_and_its_old_spelling_to(
    store_with: Callable[[int], Path], tmp_path: Path
) -> None:
    root = store_with(3)
    new = invoke("export", "--store", root, "--out", tmp_path / "new.jsonl")
    old = invoke("export", "--store", root, "--to", tmp_path / "old.jsonl")
    assert new.exit_code == 0 and old.exit_code == 0, (new.stderr, old.stderr)
    assert (tmp_path / "new.jsonl").read_bytes() == (tmp_path / "old.jsonl").read_bytes()
    both = p3log(
        "export", "--store", root, "--out", tmp_path / "a.jsonl", "--to", tmp_path / "b.jsonl"
    )
    one_line(both, "--out and --to are one option")
    one_line(p3log("export", "--store", root), "missing option --out")


def test_old_spellings_reach_the_same_checks(tmp_path: Path) -> None:
    """`--upstream`, `--target`, `--session` and `--record` are read as `--url`,
    SESSION and `--store`: each reaches the check after option parsing."""
    nowhere = tmp_path / "nope"
    one_line(
        p3log("tap", "--store", nowhere, "--upstream", "ws://127.0.0.1:9/", "--listen", ":99999"),
        "port 99999 is out of range",
    )
    for argv in (
        ["replay", "drive", "--store", nowhere, "--session", "abc", "--target", "ws://h:1/"],
        ["replay", "drive", "--store", nowhere, "abc", "--url", "ws://h:1/"],
        ["replay", "serve", "--store", nowhere, "--session", "abc", "--listen", ":0"],
        ["replay", "serve", "--store", nowhere, "abc", "--listen", ":0"],
    ):
        one_line(p3log(*argv), "no p3log store at")
    one_line(
        p3log("replay", "drive", "--store", nowhere, "abc", "--url", "ws://h:1/", "--target", "x"),
        "--url and --target are one option",
    )
    one_line(p3log("replay", "serve", "--store", nowhere, "--listen", ":0"), "missing SESSION")
    script = Path(__file__).parents[1] / "fixtures" / "pos" / "demo.toml"
    both = p3log(
        "pos", "--url", "ws://127.0.0.1:9/", "--script", script, "--store", nowhere,
        "--record", nowhere,
    )  # fmt: skip
    one_line(both, "--store and --record are one option")
    one_line(p3log("pos", "--script", script), "missing option --url")


# --- bad values are refused, not ignored -----------------------------------------------


def test_an_unknown_outcome_is_refused(store_with: Callable[[int], Path]) -> None:
    root = store_with(3)
    line = one_line(p3log("transactions", "--store", root, "--outcome", "bogus"), "BOGUS")
    assert "--outcome" in line and "APPROVED" in line
    # a known outcome the store does not hold selects nothing, and is no error
    empty = p3log("transactions", "--store", root, "--outcome", "declined", "--format", "json")
    assert empty.returncode == 0 and json.loads(empty.stdout) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "--listen", "127.0.0.1:99999"],
        ["tap", "--url", "ws://127.0.0.1:9/", "--listen", "127.0.0.1:99999"],
        ["replay", "serve", "abc", "--listen", "127.0.0.1:65536"],
    ],
    ids=["sim", "tap", "replay serve"],
)
def test_a_port_out_of_range_is_refused(argv: list[str], tmp_path: Path) -> None:
    if argv[0] != "sim":
        argv = [*argv, "--store", str(tmp_path / "store")]
    one_line(p3log(*argv), "is out of range (0 to 65535)")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("text", ["127.0.0.1:99999", "h:65536", ":1" + "0" * 30, "h:١٢"])
def test_parse_listen_never_wraps_a_port(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)
    assert parse_listen("h:65535") == ("h", 65535)


def test_tap_on_a_busy_port_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        store = tmp_path / "store"
        result = p3log(
            "tap", "--url", "ws://127.0.0.1:9/", "--listen", f"127.0.0.1:{port}", "--store", store
        )
    one_line(result, f"--listen 127.0.0.1:{port}: Address already in use")
    assert not store.exists()


# --- connection failures say why --------------------------------------------------------


def test_pos_says_the_connection_was_refused(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: a refused connect
        script = Path(__file__).parents[1] / "fixtures" / "pos" / "demo.toml"
        result = p3log("pos", "--url", f"ws://127.0.0.1:{port}/", "--script", script)
    assert result.returncode != 0, result.stdout
    assert "connection refused" in result.stderr
    assert "HandshakeError" not in result.stderr


def test_replay_drive_says_the_server_rejected_the_handshake(tmp_path: Path) -> None:
    """A plain HTTP server answers the WebSocket upgrade with its own status."""
    http = subprocess.Popen(
        [sys.executable, "-c", _HTTP_403],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert http.stdout is not None
        port = int(http.stdout.readline())
        store = tmp_path / "store"
        fixture = Path(__file__).parents[1] / "fixtures" / "sessions" / "amend.jsonl"
        assert invoke("import", "--store", store, fixture).exit_code == 0
        result = p3log(
            "replay", "drive", "--store", store, "3f05", "--url", f"ws://127.0.0.1:{port}/",
            env={"P3LOG_MERCHANT_SECRET": "s3cret"},
        )  # fmt: skip
    finally:
        http.kill()
        http.wait()
    line = one_line(result, "rejected with HTTP status 403")
    assert "HandshakeError" not in line


_HTTP_403 = """
import http.server, sys
class Refuse(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(403); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


# --- tables, piped or in a narrow terminal ---------------------------------------------


def test_piped_tables_are_full_width_rows(store_with: Callable[[int], Path]) -> None:
    root = store_with(3)
    query = (
        "SELECT seq, session_id AS a_rather_long_column_name_for_the_session, "
        "'an identifier_that_is_long_and_must_stay_whole_0123456789' AS identifier, "
        "repeat('word ', 30) AS words FROM events ORDER BY seq"
    )
    result = p3log("sql", "--store", root, query, env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = [line for line in lines if "a_rather_long_column_name_for_the_session" in line]
    assert len(header) == 1  # the header is one line, not letters down the page
    rows = [line for line in lines if re.match(r"│ +\d+ │", line)]
    assert len(rows) == 3  # one line per row, nothing wrapped
    assert all("an identifier_that_is_long_and_must_stay_whole_0123456789" in row for row in rows)
    assert all(("word " * 30).strip() in row for row in rows)


def test_a_narrow_terminal_never_breaks_an_identifier(tmp_path: Path) -> None:
    out = Console(file=io.StringIO(), force_terminal=True, width=40)
    key = "7b4e6c18b2414fd3:4c10fd7c-1a9a-42b4-94d4-0f2ff34ed706"
    rows = [(key, "MESSAGE_AFTER_RESPONSE_EXECUTE_TRANSACTION_UPDATE", "a b c d e f g h")]
    render_rows(out, ["transaction_key", "message_type", "detail"], rows, OutputFormat.table)
    assert isinstance(out.file, io.StringIO)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.file.getvalue())
    assert key in plain
    assert "MESSAGE_AFTER_RESPONSE_EXECUTE_TRANSACTION_UPDATE" in plain
    assert "transaction_key" in plain and "message_type" in plain


def test_the_findings_table_keeps_rule_names_whole_when_piped(
    store_with: Callable[[int], Path], tmp_path: Path
) -> None:
    root = store_with(3)
    con = open_store(root)
    try:
        listing = list_findings(con)
    finally:
        con.close()
    piped = Console(file=io.StringIO(), width=20)
    render_findings(piped, listing, OutputFormat.table)
    assert isinstance(piped.file, io.StringIO)
    lines = piped.file.getvalue().splitlines()
    assert all("│" not in line or line.count("│") == 5 for line in lines)


# --- make demo ---------------------------------------------------------------------------


def demo_count(root: Path) -> int:
    con = open_store(root)
    try:
        ((count,),) = con.execute("SELECT count(*) FROM transactions").fetchall()
    finally:
        con.close()
    return int(count)


def test_the_demo_starts_from_a_fresh_store_each_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "console", Console(file=io.StringIO(), width=200))
    root = tmp_path / "demo-store"
    for _ in range(2):
        result = invoke("demo", "--store", root)
        assert result.exit_code == 0, result.stderr
        assert demo_count(root) == DEMO_TRANSACTIONS


def test_the_demo_never_replaces_what_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line(p3log("demo", "--store", mine), "is not a demo store")
    assert (mine / "notes.txt").read_text() == "keep me"
    assert sorted(path.name for path in mine.iterdir()) == ["notes.txt"]


# --- one selection for the listings and the report --------------------------------------


def test_the_listing_and_the_report_select_the_same_transactions(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for path in sorted((Path(__file__).parents[1] / "fixtures" / "sessions").glob("*.jsonl")):
        if path.stem != "demo":
            import_jsonl(root, path)
    con = open_store(root)
    try:
        every = list_transactions(con).rows
        middle = every[len(every) // 2][TRANSACTION_KEY]
        ((at,),) = con.execute(
            "SELECT epoch_us(requested_at) FROM transactions WHERE transaction_key = ?", [middle]
        ).fetchall()
        selection = Selection.from_options(since=None, until=None)
        ranged = Selection(since_us=int(at))
        listed = [row[TRANSACTION_KEY] for row in list_transactions(con, ranged).rows]
    finally:
        con.close()
    assert selection.whole_store
    reported = [
        t.timeline.transaction.transaction_key for t in build_report(root, ranged).transactions
    ]
    assert listed == reported and middle in listed and len(listed) < len(every)
