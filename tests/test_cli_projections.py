"""`p3log transactions`, `show`, `findings` and `rebuild` over recorded fixture sessions.

The store holds the sessions of fixtures/sessions/ (all but the long demo), so the
commands see aborts the server accepted and one it refused (abort.jsonl), an
INCOMPLETE transaction cut off by a dropped connection (dropped_connection.jsonl),
signature actions (signature.jsonl) and amends that share their execute's
identifier (amend.jsonl). Commands run in-process through typer's CliRunner; what
depends on the process (the terminal width) runs as a real `p3log` process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from p3log.cli import app
from p3log.cli import core as cli
from p3log.projections import RULES, TABLES
from p3log.projections.listing import TRANSACTION_COLUMNS, time_bound
from p3log.projections.opening import open_store
from p3log.projections.timeline import resolve_key
from p3log.store.log import EventLog
from p3log.store.transfer import import_jsonl

SESSIONS = Path(__file__).parent.parent / "fixtures" / "sessions"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# abort.jsonl: the second execute's abort comes after the card was read; refused.
ABORT_SESSION = "7b4e6c18b2414fd3"
REFUSED_ABORT_TAG = "4c10fd7c-1a9a-42b4-94d4-0f2ff34ed706"
# dropped_connection.jsonl: the server drops the link while the execute runs.
DROPPED_SESSION = "88ac4b3e149a4a9a"
# amend.jsonl: one session, three executes, each amended once.
AMEND_SESSION = "3f054d198396418a"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit") / "store"
    for path in sorted(SESSIONS.glob("*.jsonl")):
        if path.stem != "demo":
            import_jsonl(root, path)
    open_store(root).close()  # project once, so that every test reads the same tables
    return root


@pytest.fixture(scope="module")
def listed(store: Path) -> list[tuple[str, datetime, str]]:
    """(transaction_key, requested_at, outcome) of every transaction, in request order."""
    return [
        (key, at, outcome)
        for key, at, outcome in query(
            store,
            "SELECT transaction_key, requested_at, outcome FROM transactions ORDER BY requested_at",
        )
    ]


@pytest.fixture(autouse=True)
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the commands print to, 100 columns wide (under pytest it is not a tty)."""
    monkeypatch.setattr(cli, "console", Console(soft_wrap=True, width=100))


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def ok(*args: str | Path) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def one_line_error(result: Result, expected: str) -> str:
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("p3log: ")
    assert expected in lines[0], lines[0]
    return lines[0]


def query(store: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the store. (A connection is opened per query: a command run in this
    process cannot open the store while another connection to it is open.)"""
    con = open_store(store)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def keys_of(stdout: str) -> list[str]:
    return [row["transaction_key"] for row in json.loads(stdout)]


# --- transactions ---------------------------------------------------------------------


def test_transactions_json_gives_the_contract_columns_in_request_order(
    store: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    rows = json.loads(ok("transactions", "--store", store, "--format", "json"))
    assert [(row["transaction_key"], row["outcome"]) for row in rows] == [
        (key, outcome) for key, _, outcome in listed
    ]
    assert all(tuple(row) == TRANSACTION_COLUMNS for row in rows)
    refused = next(row for row in rows if row["tag"] == REFUSED_ABORT_TAG)
    assert refused["session_id"] == ABORT_SESSION
    assert refused["outcome"] == "APPROVED"
    assert refused["abort_requested"] is True
    assert refused["amount"] == "90.0200" and refused["currency"] == "EUR"
    assert (refused["update_count"], refused["action_count"]) == (6, 1)
    requested = datetime.fromisoformat(refused["requested_at"])
    completed = datetime.fromisoformat(refused["completed_at"])
    assert refused["duration_ms"] == (completed - requested) / timedelta(milliseconds=1)


def test_transactions_csv_has_a_header_and_every_row(
    store: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    rows = list(csv.reader(io.StringIO(ok("transactions", "--store", store, "--format", "csv"))))
    assert tuple(rows[0]) == TRANSACTION_COLUMNS
    assert [row[0] for row in rows[1:]] == [key for key, _, _ in listed]
    incomplete = [row for row in rows[1:] if row[1] == DROPPED_SESSION]
    assert len(incomplete) == 1
    assert incomplete[0][TRANSACTION_COLUMNS.index("outcome")] == "INCOMPLETE"
    assert incomplete[0][TRANSACTION_COLUMNS.index("completed_at")] == ""


def test_outcome_filter_is_repeatable_comma_separated_and_any_case(
    store: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    stdout = ok(
        "transactions", "--store", store, "--format", "json",
        "--outcome", "aborted,Incomplete", "--outcome", "error",
    )  # fmt: skip
    wanted = {"ABORTED", "INCOMPLETE", "ERROR"}
    assert keys_of(stdout) == [key for key, _, outcome in listed if outcome in wanted]
    assert {row["outcome"] for row in json.loads(stdout)} == wanted
    # An outcome the protocol names but the store does not hold selects nothing; a typo
    # is refused (test_cli_conventions.py).
    none = ok("transactions", "--store", store, "--format", "json", "--outcome", "INCONCLUSIVE")
    assert json.loads(none) == []


def test_since_and_until_bound_the_request_time(
    store: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    keys = [key for key, _, _ in listed]
    third = listed[2][1]
    base = ("transactions", "--store", store, "--format", "json")
    # --since includes its instant (here with a zone)...
    assert keys_of(ok(*base, "--since", third.isoformat())) == keys[2:]
    # ... and so does --until (here naive, which is UTC).
    naive = third.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert keys_of(ok(*base, "--since", naive, "--until", naive)) == [keys[2]]
    # A date runs from its start (--since) to its end (--until).
    day = third.astimezone(UTC).date().isoformat()
    assert keys_of(ok(*base, "--since", day, "--until", day)) == keys
    assert keys_of(ok(*base, "--until", "2026-11-26")) == []


def test_time_bounds() -> None:
    def micros(text: str) -> int:
        return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)

    assert time_bound("--since", "2026-11-27") == micros("2026-11-27T00:00:00+00:00")
    assert time_bound("--until", "2026-11-27", upper=True) == micros("2026-11-28T00:00:00+00:00")
    assert time_bound("--since", "2026-11-27T22:50:12.5") == micros("2026-11-27T22:50:12.5+00:00")
    assert time_bound("--since", "2026-11-27 23:50+01:00") == micros("2026-11-27T22:50Z")
    assert time_bound("--until", "2026-11-27T22:50:12Z", upper=True) == (
        micros("2026-11-27T22:50:12Z") + 1
    )
    assert time_bound("--until", None, upper=True) is None


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_bad_time_is_one_line(store: Path, option: str) -> None:
    line = one_line_error(
        run("transactions", "--store", store, option, "last tuesday"), "is not an ISO 8601"
    )
    assert option in line and "'last tuesday'" in line


def test_the_table_fits_100_columns_and_its_short_keys_resolve(
    store: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p3log", "transactions", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[0].strip() == f"{len(listed)} transactions"
    # One line per transaction (nothing wrapped), each naming it by a key prefix that
    # `p3log show` resolves to that transaction.
    rows = [line for line in lines if re.match(r"│ [0-9a-f]{16}:", line)]
    assert len(rows) == len(listed)
    ordered = [key for key, _, _ in listed]
    shown = [row.split("│")[1].strip() for row in rows]
    con = open_store(store)
    try:
        assert [resolve_key(con, short) for short in shown] == ordered
    finally:
        con.close()
    assert all(len(short) < len(key) for short, key in zip(shown, ordered, strict=True))


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    for command in ("transactions", "findings", "rebuild"):
        one_line_error(run(command, "--store", tmp_path / "nope"), "no p3log store at")
    one_line_error(run("show", "--store", tmp_path / "nope", "abc"), "no p3log store at")
    assert not (tmp_path / "nope").exists()


# --- show -------------------------------------------------------------------------------


def show_json(store: Path, key: str) -> dict[str, Any]:
    timeline: dict[str, Any] = json.loads(ok("show", "--store", store, key, "--format", "json"))
    return timeline


def test_show_finds_a_transaction_by_key_prefix_or_identifier(store: Path) -> None:
    key = f"{ABORT_SESSION}:{REFUSED_ABORT_TAG}"
    assert show_json(store, key)["transaction"]["transaction_key"] == key
    assert show_json(store, key[:20])["transaction"]["transaction_key"] == key
    # An identifier the server gave one transaction only (a refund in amend.jsonl).
    ((identifier, refund),) = query(
        store,
        "SELECT transaction_identifier, transaction_key FROM transactions "
        "WHERE transaction_type = 'REFUND'",
    )
    assert show_json(store, identifier)["transaction"]["transaction_key"] == refund


def test_an_ambiguous_key_lists_some_candidates(store: Path) -> None:
    keys = [
        key
        for (key,) in query(
            store,
            "SELECT transaction_key FROM transactions WHERE session_id = ? ORDER BY requested_at",
            AMEND_SESSION,
        )
    ]
    assert len(keys) == 6
    line = one_line_error(run("show", "--store", store, AMEND_SESSION), "matches 6 transactions")
    assert [key for key in keys if key in line] == keys[:5]
    assert "and 1 more" in line
    # A capture keeps its execute's identifier: the identifier names both.
    ((identifier,),) = query(
        store,
        "SELECT transaction_identifier FROM transactions WHERE session_id = ? "
        "GROUP BY ALL HAVING count(*) = 2 LIMIT 1",
        AMEND_SESSION,
    )
    one_line_error(run("show", "--store", store, identifier), "matches 2 transactions")


def test_an_unknown_key_is_one_line(store: Path) -> None:
    line = one_line_error(run("show", "--store", store, "feedface"), "no transaction matches")
    assert "'feedface'" in line


def test_show_lists_every_message_of_the_transaction_at_its_recorded_time(store: Path) -> None:
    key = f"{ABORT_SESSION}:{REFUSED_ABORT_TAG}"
    timeline = show_json(store, key)
    events = query(
        store,
        "SELECT e.seq, epoch_us(e.recorded_at), e.sender, e.msg_type FROM events e "
        "JOIN transaction_events t USING (seq) WHERE t.transaction_key = ? ORDER BY seq",
        key,
    )
    assert len(events) == 13  # execute, 6 updates, action, abort + response, signature + response
    request_us = events[0][1]
    assert [(e["seq"], e["sender"], e["msg_type"]) for e in timeline["events"]] == [
        (seq, sender, msg_type) for seq, _, sender, msg_type in events
    ]
    assert [e["offset_ms"] for e in timeline["events"]] == [
        (at - request_us) / 1000 for _, at, _, _ in events
    ]
    assert (
        timeline["transaction"]["requested_at"]
        == datetime.fromtimestamp(0, UTC).__add__(timedelta(microseconds=request_us)).isoformat()
    )

    by_msg = {e["msg_type"]: e for e in timeline["events"]}
    abort = by_msg["ABORT_TRANSACTION_REQUEST"]
    assert {"kind": "abort", "text": "abort requested while NOT abortable"} in abort["markers"]
    assert [m["text"] for m in abort["markers"] if m["kind"] == "finding"] == [
        "abort_not_abortable: the latest update (PROCESSING) was not abortable "
        "and no action was waiting"
    ]
    refusal = by_msg["ABORT_TRANSACTION_RESPONSE"]
    assert refusal["summary"] == "ERROR · TRANSACTION_NO_LONGER_ABORTABLE"
    assert refusal["markers"] == [
        {"kind": "abort_answered", "text": "abort refused: ERROR TRANSACTION_NO_LONGER_ABORTABLE"}
    ]
    assert by_msg["EXECUTE_TRANSACTION_ACTION"]["summary"] == "action SIGNATURE"
    assert by_msg["EXECUTE_TRANSACTION_RESPONSE"]["summary"] == "OK · APPROVED"
    kinds = [m["kind"] for e in timeline["events"] for m in e["markers"]]
    assert kinds == [
        "window_opened",
        "window_closed",
        "abort",
        "finding",
        "abort_answered",
        "action_asked",
        "action_answered",
    ]
    assert [f["rule"] for f in timeline["findings"]] == ["abort_not_abortable"]
    assert [a["was_abortable"] for a in timeline["aborts"]] == [False]
    assert len(timeline["abort_windows"]) == 1 and len(timeline["action_waits"]) == 1
    assert {(lat["request_type"], lat["step"]) for lat in timeline["latencies"]} >= {
        ("EXECUTE_TRANSACTION_REQUEST", "first_update"),
        ("EXECUTE_TRANSACTION_REQUEST", "response"),
        ("ABORT_TRANSACTION_REQUEST", "response"),
    }


def test_show_table_reads_as_a_timeline(store: Path) -> None:
    stdout = ok("show", "--store", store, f"{ABORT_SESSION}:{REFUSED_ABORT_TAG[:8]}")
    for text in (
        f"{ABORT_SESSION}:{REFUSED_ABORT_TAG}",
        "execute CHARGE on devices/usbReader",
        "90.02 EUR",
        "APPROVED",
        "ac7122087c679917df5b136316bccb30",
        "6 updates, 1 action, 13 events, 1 finding",
        "POS →",
        "← server",
        "!! FINDING abort_not_abortable",
        "» abort window opens",
        "» abort requested while NOT abortable",
        "Abort windows",
        "Action waits",
        "Latencies",
    ):
        assert text in stdout, text


def test_show_an_incomplete_transaction_ends_at_the_close(store: Path) -> None:
    ((key,),) = query(
        store, "SELECT transaction_key FROM transactions WHERE session_id = ?", DROPPED_SESSION
    )
    timeline = show_json(store, key)
    assert timeline["transaction"]["outcome"] == "INCOMPLETE"
    assert timeline["transaction"]["completed_at"] is None
    last = timeline["events"][-1]
    assert (last["sender"], last["kind"], last["msg_type"]) == ("tap", "connection_closed", None)
    assert last["summary"] == "closed by server · 1011 · simulated connection drop"
    assert [m["kind"] for m in last["markers"]] == ["finding"]
    assert last["markers"][0]["text"].startswith("missing_response: ")
    table = ok("show", "--store", store, key)
    assert "no response recorded" in table
    assert "!! FINDING missing_response" in table


def test_show_times_an_action_wait(store: Path) -> None:
    ((key, wait_ms, answered_seq),) = query(
        store,
        "SELECT transaction_key, wait_ms, answered_seq FROM action_waits "
        "WHERE transaction_key IN (SELECT transaction_key FROM transactions "
        "WHERE session_id = (SELECT session_id FROM events WHERE seq = ("
        "  SELECT min(seq) FROM events WHERE msg_type = 'SUBMIT_SIGNATURE_REQUEST'"
        ")))",
    )
    timeline = show_json(store, key)
    (answer,) = [e for e in timeline["events"] if e["seq"] == answered_seq]
    assert answer["msg_type"] == "SUBMIT_SIGNATURE_REQUEST"
    texts = [m["text"] for m in answer["markers"]]
    assert texts == [f"SIGNATURE answered with signature after {wait_ms:g} ms"]
    assert timeline["action_waits"][0]["wait_ms"] == wait_ms


# --- findings ---------------------------------------------------------------------------


def test_findings_in_seq_order_and_by_rule(store: Path) -> None:
    every = json.loads(ok("findings", "--store", store, "--format", "json"))
    assert [(f["seq"], f["rule"]) for f in every] == query(
        store, "SELECT seq, rule FROM protocol_findings ORDER BY seq"
    )
    assert {f["rule"] for f in every} >= {"abort_not_abortable", "missing_response"}
    assert tuple(every[0]) == ("session_id", "transaction_key", "seq", "rule", "detail")
    missing = json.loads(
        ok("findings", "--store", store, "--format", "json", "--rule", "missing_response")
    )
    assert [f["session_id"] for f in missing] == [DROPPED_SESSION]
    both = ok(
        "findings", "--store", store, "--format", "csv",
        "--rule", "missing_response,abort_not_abortable",
    )  # fmt: skip
    rows = list(csv.reader(io.StringIO(both)))
    assert rows[0] == ["session_id", "transaction_key", "seq", "rule", "detail"]
    assert sorted(row[3] for row in rows[1:]) == ["abort_not_abortable", "missing_response"]
    table = ok("findings", "--store", store)
    assert "missing_response" in table and f"{DROPPED_SESSION}:0506" in table


def test_an_unknown_rule_is_one_line_naming_the_rules(store: Path) -> None:
    line = one_line_error(
        run("findings", "--store", store, "--rule", "missing_response,abort_too_late"),
        "unknown rule abort_too_late",
    )
    assert all(rule in line for rule in RULES)


# --- rebuild ----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = open_store(root)
    try:
        return {
            table.name: sorted(con.execute(f"SELECT * FROM {table.name}").fetchall(), key=repr)
            for table in TABLES
        }
    finally:
        con.close()


def test_rebuild_reports_counts_and_leaves_the_same_tables(store: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(store, root)
    before = snapshot(root)
    events = sum(1 for path in SESSIONS.glob("*.jsonl") if path.stem != "demo" for _ in path.open())
    stdout = ok("rebuild", "--store", root)
    match = re.fullmatch(
        r"rebuilt projections from (\d+) events in [\d.]+ s: (\d+) transactions, (\d+) findings\n",
        stdout,
    )
    assert match, stdout
    assert int(match[1]) == events
    assert int(match[2]) == len(before["transactions"])
    assert int(match[3]) == len(before["protocol_findings"])
    assert snapshot(root) == before


def test_rebuild_while_the_store_is_recorded_is_one_line(store: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(store, root)
    with EventLog.open(root, create=False):  # the writer lock, as a running tap holds it
        one_line_error(run("rebuild", "--store", root), "is being recorded by another process")


def test_rebuild_keeps_the_dialect_the_store_was_projected_with(
    store: Path, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(store, root)
    dialect = tmp_path / "dialect.toml"
    dialect.write_text('[action]\naction_key = "whatToDo"\n')
    ok("rebuild", "--store", root, "--dialect", dialect)
    ok("rebuild", "--store", root)
    (recorded,) = query(root, "SELECT dialect FROM projection_meta")[0]
    assert json.loads(recorded)["action"]["action_key"] == "whatToDo"
    # The fixtures' actions say `action`, so under this dialect they have no name.
    assert query(root, "SELECT DISTINCT action FROM action_waits") == [(None,)]


def test_help_lists_the_commands() -> None:
    stdout = ok("--help")
    for command in ("transactions", "show", "findings", "rebuild"):
        assert command in stdout
