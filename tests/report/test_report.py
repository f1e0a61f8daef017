"""`p3log report` without a browser: what the page says, its filters, its escaping, a
broken chain, the checkpoint line, and that nothing in it points outside the file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from p3log.cli import app
from p3log.projections.opening import open_store
from p3log.report import CONTENT_SECURITY_POLICY, Report, Selection, build_report, render_html
from p3log.report.model import default_checkpoint_path
from p3log.store.errors import StoreError
from p3log.store.index import connect
from p3log.store.log import EventLog
from p3log.store.redact import REDACTION_POLICY
from p3log.store.verify import make_checkpoint
from p3log.visible import visible
from tests.conftest import fill_store
from tests.report.page import Element, Page, csp_hash

# abort.jsonl: the second execute's abort comes after the card was read; refused.
REFUSED_ABORT_KEY = "7b4e6c18b2414fd3:4c10fd7c-1a9a-42b4-94d4-0f2ff34ed706"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def query(store: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = open_store(store)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("p3log: ")
    assert expected in lines[0], lines[0]


def report_page(store: Path, out: Path, *args: str | Path, code: int = 0) -> Page:
    result = run("report", "--store", store, "--out", out, *args)
    assert result.exit_code == code, result.stderr
    return Page(out.read_text(encoding="utf-8"))


def keys(page: Page) -> list[str]:
    return [e.attrs["data-transaction-key"] for e in page.all("details", class_="txn")]


@pytest.fixture(scope="module")
def listed(fixture_store: Path) -> list[tuple[str, datetime, str]]:
    """(transaction_key, requested_at, outcome) in request order."""
    return [
        (str(key), at, str(outcome))
        for key, at, outcome in query(
            fixture_store,
            "SELECT transaction_key, requested_at, outcome FROM transactions "
            "ORDER BY requested_at, request_seq",
        )
    ]


def test_the_whole_store_report_lists_every_transaction_with_its_outcome(
    fixture_store: Path, tmp_path: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    out = tmp_path / "report.html"
    result = run("report", "--store", fixture_store, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"report: {len(listed)} transactions, chain OK, written to {out}\n"

    page = Page(out.read_text(encoding="utf-8"))
    assert keys(page) == [key for key, _, _ in listed]
    assert [e.attrs["data-outcome"] for e in page.all("details", class_="txn")] == [
        outcome for _, _, outcome in listed
    ]
    assert page.by_id("transaction-count").text == str(len(listed))
    chips = {
        e.attrs["data-outcome"]: e.attrs["data-count"] for e in page.all("span", class_="chip")
    }
    assert chips == {
        outcome: str(sum(o == outcome for _, _, o in listed)) for _, _, outcome in listed
    }
    chain = page.by_id("chain")
    assert chain.attrs["data-chain"] == "OK"
    ((events,),) = query(fixture_store, "SELECT count(*) FROM events")
    assert f"{events} events" in chain.text
    assert page.by_id("checkpoint").attrs["data-checkpoint"] == "none"
    assert "Not verified against a checkpoint" in page.by_id("checkpoint").text
    assert "every transaction in the store" in page.by_id("report-header").text


@pytest.fixture(scope="module")
def whole(fixture_store: Path) -> Report:
    return build_report(fixture_store)


def test_a_transaction_s_timeline_has_its_messages_windows_waits_and_findings(
    whole: Report,
) -> None:
    report = whole
    page = Page(render_html(report))
    (details,) = page.all("details", data_transaction_key=REFUSED_ABORT_KEY)
    anchor = details.attrs["id"]
    # Everything inside that transaction's <details>, in document order.
    start = page.elements.index(details)
    end = next(
        (
            index
            for index, element in enumerate(page.elements[start + 1 :], start + 1)
            if element.tag == "details" and "txn" in element.attrs.get("class", "").split()
        ),
        len(page.elements),
    )
    inside = page.elements[start:end]

    def having(tag: str, css: str) -> list[Element]:
        return [e for e in inside if e.tag == tag and css in e.attrs.get("class", "").split()]

    rows = having("tr", "event")
    (timeline,) = [
        item.timeline
        for item in report.transactions
        if item.timeline.transaction.transaction_key == REFUSED_ABORT_KEY
    ]
    assert [int(row.attrs["data-seq"]) for row in rows] == [e.seq for e in timeline.events]
    assert having("rect", "window") and having("rect", "wait") and having("path", "abort")
    assert [int(row.attrs["data-seq"]) for row in having("tr", "finding-row")] == [18]
    assert having("circle", "finding")
    # The findings section links to the transaction.
    (finding,) = [f for f in report.findings if f.transaction_key == REFUSED_ABORT_KEY]
    assert finding.rule == "abort_not_abortable"
    assert page.all("a", href=f"#{anchor}")


def test_the_page_points_nowhere_outside_itself(whole: Report) -> None:
    html = render_html(whole)
    page = Page(html)
    (meta,) = page.all("meta", http_equiv="Content-Security-Policy")
    assert meta.attrs["content"] == CONTENT_SECURITY_POLICY
    assert CONTENT_SECURITY_POLICY.startswith("default-src 'none';")
    # The one script and the one stylesheet are the ones the policy allows.
    assert len(page.all("script")) == 1 and len(page.all("style")) == 1
    assert f"script-src {csp_hash(page.scripts[0])};" in CONTENT_SECURITY_POLICY
    assert f"style-src {csp_hash(page.styles[0])};" in CONTENT_SECURITY_POLICY
    fetching = {"link", "img", "iframe", "object", "embed", "audio", "video", "source", "base"}
    assert not [e for e in page.elements if e.tag in fetching]
    for element in page.elements:
        assert "src" not in element.attrs and "style" not in element.attrs, element
        assert element.attrs.get("href", "#").startswith("#"), element
    assert "url(" not in page.styles[0] and "@import" not in page.styles[0]
    # (Store text may well hold a URL, such as the upstream's: as text, never as a link.)
    assert "://" not in page.styles[0] and "://" not in page.scripts[0]


def test_what_the_store_holds_is_shown_as_text_never_as_markup(tmp_path: Path) -> None:
    """Tags, payloads and lifecycle details are bytes a peer sent: none becomes markup."""
    root = tmp_path / "store"
    tag = "<script>alert('tag')</script>\"'&\x1b"
    evil = '<img src=x onerror="alert(1)"><style>body{display:none}</style>'
    with EventLog.open(root) as log:
        request = {
            "type": "EXECUTE_TRANSACTION_REQUEST",
            "tag": tag,
            "resource": "devices/<marquee>reader</marquee>",
            "executeTransactionRequest": {
                "transactionParameters": {"amount": 1.5, "currency": "EUR", "type": "CHARGE"},
                "note": evil,
            },
        }
        log.record_message("s1", "client", json.dumps(request).encode())
        log.record_message("s1", "client", b'<iframe src="data:,x">\xff\x1b')
        log.record_lifecycle("s1", "connection_closed", {"by": "pos", "reason": evil})
    out = tmp_path / "report.html"
    page = report_page(root, out)
    html = out.read_text(encoding="utf-8")

    assert len(page.all("script")) == 1  # the report's own
    assert len(page.all("style")) == 1
    assert not page.all("img") and not page.all("iframe") and not page.all("marquee")
    shown_tag = tag.replace("\x1b", "\\x1b")  # a control character is shown, not sent
    (details,) = page.all("details", class_="txn")
    assert details.attrs["data-transaction-key"] == f"s1:{shown_tag}"
    assert f"s1:{shown_tag}" in page.text  # the key, as text
    assert "devices/<marquee>reader</marquee>" in page.text
    assert evil in page.text  # in the request's payload and the close's reason
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "\x1b" not in html


def test_characters_a_browser_obeys_rather_than_shows_are_escaped(tmp_path: Path) -> None:
    """A bidi override reorders what an auditor reads; a line separator breaks a line;
    `</style>` and quotes in an attribute end what they are in: none of them does."""
    root = tmp_path / "store"
    tag = "t\u202egpj.exe\u2066\u2028</style></script><script>x()</script>'\"\x9b\U000e0041"
    with EventLog.open(root) as log:
        request = {
            "type": "EXECUTE_TRANSACTION_REQUEST",
            "tag": tag,
            "executeTransactionRequest": {
                "transactionParameters": {"amount": 1, "currency": "EUR", "type": "CHARGE"}
            },
        }
        log.record_message("s1", "client", json.dumps(request).encode())
    out = tmp_path / "report.html"
    page = report_page(root, out)
    html = out.read_text(encoding="utf-8")
    shown = visible(tag)  # every character shown as its escape, the same as in a terminal
    assert "\\u202e" in shown and "\\x9b" in shown
    (details,) = page.all("details", class_="txn")
    assert details.attrs["data-transaction-key"] == f"s1:{shown}"
    assert f"s1:{shown}" in page.text
    for obeyed in ("\u202e", "\u2066", "\u2028", "\x9b", "\U000e0041"):
        assert obeyed not in html
    assert len(page.all("style")) == 1 and len(page.all("script")) == 1
    assert "</style></script><script>" not in html


def test_one_transaction_by_a_prefix_of_its_key(fixture_store: Path, tmp_path: Path) -> None:
    prefix = REFUSED_ABORT_KEY[:22]
    out = tmp_path / "one.html"
    result = run("report", "--store", fixture_store, "--out", out, "--transaction", prefix)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"report: 1 transaction, chain OK, written to {out}\n"
    page = Page(out.read_text(encoding="utf-8"))
    assert keys(page) == [REFUSED_ABORT_KEY]
    assert f"transaction {prefix}" in page.by_id("report-header").text
    assert [e.attrs["data-rule"] for e in page.all("tr", class_="finding")] == [
        "abort_not_abortable"
    ]

    report = build_report(fixture_store, Selection(key=prefix))
    (item,) = report.transactions
    assert report.redaction.events == len(item.timeline.events)


def test_a_time_range_selects_by_request_time_both_ends_included(
    fixture_store: Path, tmp_path: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    since, until = listed[4][1], listed[9][1]
    page = report_page(
        fixture_store,
        tmp_path / "range.html",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
    )
    assert keys(page) == [key for key, _, _ in listed[4:10]]
    assert "transactions requested from" in page.by_id("report-header").text

    later = (listed[-1][1] + timedelta(days=1)).date().isoformat()
    empty = report_page(fixture_store, tmp_path / "empty.html", "--since", later)
    assert keys(empty) == []
    assert "No transaction in the selection." in empty.text


def test_findings_of_a_range_are_those_of_its_transactions(
    fixture_store: Path, listed: list[tuple[str, datetime, str]]
) -> None:
    first = listed[0][1]
    epoch = datetime(1970, 1, 1, tzinfo=first.tzinfo)
    micros = (first - epoch) // timedelta(microseconds=1)
    report = build_report(fixture_store, Selection(since_us=micros, until_us=micros + 1))
    assert [t.timeline.transaction.transaction_key for t in report.transactions] == [listed[0][0]]
    assert {f.transaction_key for f in report.findings} <= {listed[0][0]}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--transaction", "7b4e", "--since", "2026-01-01"], "--transaction names one"),
        (["--transaction", "no-such-key"], "no transaction matches 'no-such-key'"),
        (["--transaction", "7b4e6c18b2414fd3:"], "matches 2 transactions"),
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO 8601"),
        (["--until", "2026-13-01"], "--until '2026-13-01' is not an ISO 8601"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_no_file(
    fixture_store: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    out = tmp_path / "report.html"
    one_line_error(run("report", "--store", fixture_store, "--out", out, *args), expected)
    assert not out.exists()


def test_a_missing_store_or_output_directory_is_exit_2(fixture_store: Path, tmp_path: Path) -> None:
    one_line_error(
        run("report", "--store", tmp_path / "nothing", "--out", tmp_path / "r.html"),
        "no p3log store at",
    )
    one_line_error(
        run("report", "--store", fixture_store, "--out", tmp_path / "no" / "r.html"),
        "cannot write",
    )
    assert list(tmp_path.iterdir()) == []


def test_a_broken_chain_is_reported_and_exits_1_with_the_report_written(
    store_copy: Path, tmp_path: Path
) -> None:
    with connect(store_copy / "index.duckdb") as con:
        con.execute(
            "UPDATE event_log SET payload = replace(payload, 'CHARGE', 'REFUND') WHERE seq = 5"
        )
    out = tmp_path / "report.html"
    result = run("report", "--store", store_copy, "--out", out)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert re.fullmatch(
        r"report: \d+ transactions, chain BROKEN at seq 5 \(index\): the event's content "
        rf"does not match its hash, written to {re.escape(str(out))}\n",
        result.stderr,
    ), result.stderr
    page = Page(out.read_text(encoding="utf-8"))
    chain = page.by_id("chain")
    assert chain.attrs["data-chain"] == "BROKEN" and "broken" in chain.attrs["class"].split()
    assert "Hash chain BROKEN" in chain.text
    assert page.by_id("first-bad-seq").attrs["data-seq"] == "5"
    assert keys(page)  # the transactions are still there to audit


HOLD_THE_STORE = """
import sys
from pathlib import Path
from p3log.projections.opening import open_log
with open_log(Path(sys.argv[1]), create=False):
    print("recording", flush=True)
    sys.stdin.read()
"""


def test_while_a_recorder_holds_the_store_the_chain_is_not_verified(
    store_copy: Path, tmp_path: Path
) -> None:
    """The report reads the store live, like `p3log sql`, but cannot recompute the chain
    over an index a recorder has open: it says so, and exits 1."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_STORE, str(store_copy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "recording\n"
        out = tmp_path / "r.html"
        result = run("report", "--store", store_copy, "--out", out)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert result.exit_code == 1
    assert "chain NOT VERIFIED" in result.stderr
    page = Page(out.read_text(encoding="utf-8"))
    chain = page.by_id("chain")
    assert chain.attrs["data-chain"] == "NOT VERIFIED"
    assert "could not be checked" in chain.text and "open for recording" in chain.text
    assert keys(page)


def test_the_checkpoint_next_to_the_store_is_used_by_default(
    store_copy: Path, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(store_copy)
    default = default_checkpoint_path(store_copy)
    assert default == store_copy.parent / "store.checkpoint.json"
    default.write_text(checkpoint.to_json())
    page = report_page(store_copy, tmp_path / "r.html")
    line = page.by_id("checkpoint")
    assert line.attrs["data-checkpoint"] == "used"
    assert "found next to the store" in line.text
    assert f"{checkpoint.count} events" in line.text and checkpoint.head_hash in line.text
    assert "matches: the log only grew since" in line.text
    assert page.by_id("chain").attrs["data-chain"] == "OK"


def test_a_checkpoint_of_another_store_does_not_match(fixture_store: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    fill_store(other, 4)
    cp = tmp_path / "other.json"
    cp.write_text(make_checkpoint(other).to_json())
    out = tmp_path / "r.html"
    result = run("report", "--store", fixture_store, "--out", out, "--checkpoint", cp)
    assert result.exit_code == 1
    assert "chain BROKEN at seq 0 (checkpoint)" in result.stderr
    page = Page(out.read_text(encoding="utf-8"))
    line = page.by_id("checkpoint")
    assert "(found next to the store)" not in line.text
    assert "does not match: the checkpoint belongs to a different store" in line.text


def test_an_unreadable_checkpoint_is_bad_input(fixture_store: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    cp.write_text("{}")
    out = tmp_path / "r.html"
    one_line_error(
        run("report", "--store", fixture_store, "--out", out, "--checkpoint", cp),
        "is not a p3log checkpoint",
    )
    assert not out.exists()


def test_the_redaction_section_counts_the_rules_that_fired(
    fixture_store: Path, whole: Report
) -> None:
    report = whole
    counts = dict(
        query(
            fixture_store,
            "SELECT rule, count(DISTINCT seq) FROM "
            "(SELECT seq, unnest(redactions) AS rule FROM events) GROUP BY rule",
        )
    )
    assert counts.get("merchant_secret", 0) > 0  # every login carries a secret
    fired = {rule.name: rule.events for rule in report.redaction.rules}
    assert fired == {name: counts.get(name, 0) for name in fired}
    assert set(fired) >= {"merchant_secret", "pan", "reserialized"}
    page = Page(render_html(report))
    assert page.by_id("redaction-policy").text == REDACTION_POLICY
    rows = {e.attrs["data-rule"] for e in page.all("tr") if "data-rule" in e.attrs}
    assert {"merchant_secret", "pan", "reserialized"} <= rows
    text = " ".join(page.by_id("redaction").text.split())
    assert "hmac-sha256" in text and "first 6 and last 4 digits" in text
    redaction = report.redaction
    assert f"{redaction.redacted_events} of the {redaction.events} events" in text
    assert redaction.redacted_events == counts["merchant_secret"]


def test_a_selection_larger_than_a_report_holds_is_refused(fixture_store: Path) -> None:
    with pytest.raises(StoreError, match="more than a report holds"):
        build_report(fixture_store, max_transactions=3)
