"""The command line as a user runs it: a real `p3log` process per call."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from p3log.store.index import connect
from p3log.store.verify import Checkpoint
from tests.processes import run_p3log

p3log = run_p3log


def _one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_help_lists_the_commands() -> None:
    result = p3log("--help")
    assert result.returncode == 0
    for command in ("verify", "checkpoint", "import", "export", "sql", "demo"):
        assert command in result.stdout


def test_sql_formats(store_with: Callable[[int], Path]) -> None:
    root = store_with(4)
    query = "SELECT seq, sender, msg_type FROM events ORDER BY seq"
    as_json = p3log("sql", "--store", root, "--format", "json", query)
    assert as_json.returncode == 0, as_json.stderr
    assert [row["seq"] for row in json.loads(as_json.stdout)] == [1, 2, 3, 4]
    as_csv = p3log("sql", "--store", root, "--format", "csv", query)
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["seq", "sender", "msg_type"]
    assert rows[1] == ["1", "client", "PING_REQUEST"]
    as_table = p3log("sql", "--store", root, query)
    assert "PING_RESPONSE" in as_table.stdout


def test_sql_is_read_only(store_with: Callable[[int], Path]) -> None:
    root = store_with(2)
    _one_line_error(p3log("sql", "--store", root, "DELETE FROM event_log"), "read-only")
    assert p3log("verify", "--store", root).returncode == 0


def test_verify_checkpoint_round(store_with: Callable[[int], Path], tmp_path: Path) -> None:
    root = store_with(6)
    ok = p3log("verify", "--store", root)
    assert ok.returncode == 0
    assert ok.stdout.startswith("verify OK: 6 events, head ")
    cp = tmp_path / "cp.json"
    assert p3log("checkpoint", "--store", root, "--out", cp).returncode == 0
    assert p3log("verify", "--store", root, "--against", cp).returncode == 0

    with connect(root / "index.duckdb") as con:
        con.execute("UPDATE event_log SET tag = 'forged' WHERE seq = 4")
    failed = p3log("verify", "--store", root)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "verify FAILED at seq 4 (index): the event's content does not match its hash"
    )


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    _one_line_error(p3log("verify", "--store", tmp_path / "nope"), "no p3log store at")
    _one_line_error(p3log("sql", "--store", tmp_path / "nope", "SELECT 1"), "no p3log store at")
    assert not (tmp_path / "nope").exists()


def test_a_store_from_a_newer_format_is_refused_unchanged(
    store_with: Callable[[int], Path],
) -> None:
    root = store_with(2)
    meta = json.loads((root / "store.json").read_text())
    meta["format_version"] = 99
    (root / "store.json").write_text(json.dumps(meta))
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    _one_line_error(p3log("sql", "--store", root, "SELECT 1"), "newer p3log (format 99")
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == before


def test_import_and_export_commands(store_with: Callable[[int], Path], tmp_path: Path) -> None:
    root = store_with(3)
    out = tmp_path / "out.jsonl"
    exported = p3log("export", "--store", root, "--to", out)
    assert exported.returncode == 0 and "exported 3 events" in exported.stdout
    imported = p3log("import", "--store", tmp_path / "copy", out)
    assert imported.returncode == 0 and "imported 3 events" in imported.stdout
    _one_line_error(
        p3log("import", "--store", tmp_path / "copy", out), "3 of its 3 events are already"
    )
    (tmp_path / "bad.jsonl").write_text("{}\n")
    _one_line_error(p3log("import", "--store", root, tmp_path / "bad.jsonl"), "bad.jsonl:1:")


def test_demo_runs_every_flow_through_the_tap_and_verifies(tmp_path: Path) -> None:
    result = p3log("demo", "--store", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "16 transactions, 0 not as scripted" in result.stdout
    assert "verify OK" in result.stdout
    assert "the merchant secret appears in none of the" in result.stdout
    assert Checkpoint.from_file(tmp_path / "demo.checkpoint.json").count > 100
    # The transactions of the run, its findings, and the report, verified against
    # the checkpoint the demo wrote.
    for outcome in ("APPROVED", "DECLINED", "ABORTED", "ERROR", "INCOMPLETE"):
        assert outcome in result.stdout
    assert "missing_response" in result.stdout
    report = (tmp_path / "demo-report.html").read_text()
    assert "demo.checkpoint.json" in report
    assert f"audit report: {tmp_path / 'demo-report.html'}" in result.stdout


def test_a_damaged_store_description_is_one_line(store_with: Callable[[int], Path]) -> None:
    root = store_with(1)
    (root / "store.json").write_text("{not json")
    _one_line_error(p3log("verify", "--store", root), "is not a p3log store description")


def test_a_file_where_a_store_should_be_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("hello")
    _one_line_error(p3log("sql", "--store", tmp_path / "plain.txt", "SELECT 1"), "no p3log store")


def test_a_bad_dialect_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "d.toml").write_text("[tcp]\nframing = 'u24be'\n")
    result = p3log(
        "tap",
        "--upstream",
        "ws://127.0.0.1:9/",
        "--store",
        tmp_path / "s",
        "--dialect",
        tmp_path / "d.toml",
    )
    _one_line_error(result, "tcp.framing: expected one of")
    assert not (tmp_path / "s").exists()
