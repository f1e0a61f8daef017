"""The auditor's report as one self-contained HTML file.

Self-contained means: opening the file fetches nothing. The page has no external
URL of any kind (no font, image, stylesheet or script is loaded; the timelines are
inline SVG; fonts are the reader's own), and a Content-Security-Policy `<meta>`
with `default-src 'none'` forbids every fetch anyway. The one stylesheet and the one
script are inline and allowed by their SHA-256 hashes, so markup that slipped into
the page could neither run a script nor restyle it. The script is a convenience
(open a transaction a link points at, open or close all); without it every
transaction still opens, because each is a `<details>` element.

Everything that comes from the store is escaped (`_e`): payloads, tags, statuses and
summaries are bytes a POS or a server sent, and the store keeps them as they were.
Class names and ids are never made from store text.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Final

from p3log.projections.rows import FindingRow
from p3log.projections.timeline import Timeline, TimelineEvent, money, timeline_sections
from p3log.report.model import (
    CONTENT_LIMIT,
    EventContent,
    Report,
    ReportTransaction,
)
from p3log.store.errors import StoreError
from p3log.visible import visible
from p3log.wording import counted, instant_text, plural

__all__ = ["CONTENT_SECURITY_POLICY", "render_html", "write_html"]

_CSS: Final = """
:root { --fg: #1d2430; --muted: #5b6576; --line: #d9dee7; --bg: #ffffff; --band: #f4f6f9;
  --ok: #1a7f37; --bad: #c62828; --warn: #9a6700; --pos: #1f5fbf; --server: #2e7d32;
  --tap: #7a7f8a; --window: #18a0b4; --wait: #a243b8; --abort: #d98b00; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.4;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
header { background: var(--band); border-bottom: 1px solid var(--line); padding: 16px 24px; }
main { padding: 8px 24px 32px; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
a { color: var(--pos); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.chain { margin-top: 12px; padding: 10px 14px; border-radius: 6px; border: 1px solid; }
.chain.ok { border-color: var(--ok); background: #eaf6ec; }
.chain.broken { border-color: var(--bad); background: #fdecea; }
.chain.unverified { border-color: var(--warn); background: #fff6e0; }
.chain .verdict { font-size: 16px; font-weight: 700; }
.chain.ok .verdict { color: var(--ok); }
.chain.broken .verdict { color: var(--bad); }
.chain.unverified .verdict { color: var(--warn); }
.chain p { margin: 4px 0 0; overflow-wrap: anywhere; }
.chain .no-checkpoint strong { color: var(--warn); }
nav { margin-top: 10px; }
nav a { margin-right: 16px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; }
.chip { border: 1px solid var(--line); border-radius: 14px; padding: 2px 10px; }
.chip b { margin-left: 4px; }
.o-approved { color: var(--ok); }
.o-declined, .o-aborted { color: var(--warn); }
.o-error, .o-incomplete { color: var(--bad); font-weight: 600; }
.tools { margin: 0 0 8px; }
.tools button { font: inherit; padding: 2px 10px; margin-right: 6px; }
.txn-table { border: 1px solid var(--line); border-radius: 6px; }
.row { display: grid; gap: 8px; padding: 6px 10px; align-items: baseline;
  grid-template-columns: minmax(14em, 2.2fr) 14em 10em 8em 8em 8em 5em; }
.row > span { overflow-wrap: anywhere; }
.row > span:nth-child(2) { white-space: nowrap; }
.row .num { text-align: right; }
.txn-head { font-weight: 600; color: var(--muted); border-bottom: 1px solid var(--line); }
details.txn { border-bottom: 1px solid var(--line); }
details.txn:last-child { border-bottom: none; }
details.txn > summary { cursor: pointer; list-style: none; }
details.txn > summary::-webkit-details-marker { display: none; }
details.txn > summary > span:first-child::before { content: "\\25B8\\00A0"; color: var(--muted); }
details.txn[open] > summary > span:first-child::before { content: "\\25BE\\00A0"; }
details.txn > summary:hover { background: var(--band); }
details.txn[open] > summary { background: var(--band); box-shadow: inset 3px 0 var(--pos); }
.has-findings .nf { color: var(--bad); font-weight: 700; }
.txn-body { padding: 8px 14px 16px 28px; }
table { border-collapse: collapse; width: 100%; }
table.compact { width: auto; min-width: 50%; }
th, td { text-align: left; vertical-align: top; padding: 3px 8px;
  border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
.nowrap { white-space: nowrap; overflow-wrap: normal; }
tr.finding-row td { background: #fdecea; }
.marker { font-size: 12.5px; }
.marker.window_opened, .marker.window_closed { color: #0b7285; }
.marker.action_asked, .marker.action_answered { color: #862e9c; }
.marker.abort, .marker.abort_answered { color: var(--warn); }
.marker.finding { color: var(--bad); font-weight: 700; }
.from-client { color: var(--pos); }
.from-server { color: var(--server); }
.from-tap { color: var(--tap); }
details.payload > summary { cursor: pointer; color: var(--muted); }
pre { margin: 4px 0; padding: 6px 8px; background: var(--band); border-radius: 4px;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 24em; overflow: auto; }
svg.timeline { width: 100%; height: auto; max-width: 1100px; display: block; margin: 6px 0; }
svg.timeline text { font-size: 11px; fill: var(--muted); }
svg.timeline .lane { fill: var(--band); }
svg.timeline .axis { stroke: var(--line); }
svg.timeline .ev { stroke-width: 2; }
svg.timeline .ev.client { stroke: var(--pos); }
svg.timeline .ev.server { stroke: var(--server); }
svg.timeline .ev.tap { stroke: var(--tap); }
svg.timeline .window { fill: var(--window); opacity: .75; }
svg.timeline .wait { fill: var(--wait); opacity: .75; }
svg.timeline .open-ended { opacity: .35; }
svg.timeline .abort { fill: var(--abort); }
svg.timeline .finding { fill: var(--bad); }
.legend { color: var(--muted); font-size: 12.5px; }
.legend span { margin-right: 14px; }
.legend .sw { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  border-radius: 2px; vertical-align: -1px; }
.sw.client { background: var(--pos); } .sw.server { background: var(--server); }
.sw.tap { background: var(--tap); } .sw.window { background: var(--window); }
.sw.wait { background: var(--wait); } .sw.abort { background: var(--abort); }
.sw.finding { background: var(--bad); }
.muted { color: var(--muted); }
.none { color: var(--muted); font-style: italic; }
p.empty { margin: 6px 0; font-size: 14px; }
footer { color: var(--muted); font-size: 12px; padding: 12px 24px 24px;
  border-top: 1px solid var(--line); }
@media print { .tools { display: none; } header { background: none; } }
"""

_SCRIPT: Final = """
(function () {
  "use strict";
  document.body.setAttribute("data-js", "on");
  function all(open) {
    document.querySelectorAll("details.txn").forEach(function (d) { d.open = open; });
  }
  function openTarget() {
    var id = window.location.hash.slice(1);
    var target = id ? document.getElementById(id) : null;
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      target.scrollIntoView();
    }
  }
  var tools = document.getElementById("txn-tools");
  if (tools) {
    tools.hidden = false;
    document.getElementById("open-all").addEventListener("click", function () { all(true); });
    document.getElementById("close-all").addEventListener("click", function () { all(false); });
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
"""


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; style-src {_hash(_CSS)}; script-src {_hash(_SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)
"""Nothing may be fetched; only the report's own stylesheet and script apply."""

_SENDERS: Final = {"client": "POS →", "server": "← server", "tap": "tap"}
_OUTCOME_CLASSES: Final = {
    "APPROVED": "o-approved",
    "DECLINED": "o-declined",
    "ABORTED": "o-aborted",
    "ERROR": "o-error",
    "INCOMPLETE": "o-incomplete",
}


def render_html(report: Report) -> str:
    """The whole report as one HTML document."""
    anchors = {
        item.timeline.transaction.transaction_key: f"txn-{index}"
        for index, item in enumerate(report.transactions, start=1)
    }
    title = f"p3log audit report: {report.store}"
    parts = [
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">\n",
        "<meta name='referrer' content='no-referrer'>\n",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n",
        "<meta name='generator' content='p3log report'>\n",
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        _header(report),
        "<main>\n",
        _summary(report),
        _transactions(report, anchors),
        _findings(report.findings, anchors),
        _redaction(report),
        "</main>\n",
        _footer(report),
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n",
    ]
    return "".join(parts)


# --- header and summary ---------------------------------------------------------------


def _header(report: Report) -> str:
    meta = report.meta
    facts = _facts(
        [
            ("store", f"<code>{_e(report.store)}</code>"),
            ("store id", f"<code>{_e(meta.store_id)}</code>"),
            (
                "format",
                f"{_e(meta.format_version)}, "
                f"created {_e(instant_text(meta.created_at_us, zone=True))}",
            ),
            ("generated at", _e(instant_text(report.generated_at_us, zone=True))),
            ("selection", _e(report.selection.describe())),
        ]
    )
    return (
        "<header id='report-header'>\n<h1>P3 audit report</h1>\n"
        f"{facts}{_chain(report)}"
        "<nav><a href='#summary'>Summary</a><a href='#transactions'>Transactions</a>"
        "<a href='#findings'>Findings</a><a href='#redaction'>Redaction</a></nav>\n"
        "</header>\n"
    )


def _chain(report: Report) -> str:
    chain = report.chain
    status = chain.report
    css = {"OK": "ok", "BROKEN": "broken"}.get(chain.label, "unverified")
    if status is None:
        detail = f"The hash chain could not be checked: {_e(chain.not_checked or 'unknown')}."
    elif status.problem is None:
        lag = status.count - status.indexed
        detail = (
            f"{status.count} events, every hash recomputed and linked; head "
            f"<code>{_e(status.head_hash)}</code>."
            + (f" {lag} journaled events are not indexed yet." if lag else "")
        )
    else:
        problem = status.problem
        detail = (
            f"First bad event: <strong id='first-bad-seq' data-seq='{problem.seq}'>seq "
            f"{problem.seq}</strong> ({_e(problem.source)}): {_e(problem.reason)}. "
            f"The journal holds {status.count} events; head <code>{_e(status.head_hash)}</code>."
        )
    return (
        f"<div id='chain' class='chain {css}' data-chain='{_e(chain.label)}'>\n"
        f"<div class='verdict'>Hash chain {_e(chain.label)}</div>\n<p>{detail}</p>\n"
        f"{_checkpoint_line(report)}</div>\n"
    )


def _checkpoint_line(report: Report) -> str:
    chain = report.chain
    used = chain.checkpoint
    if used is None:
        return (
            "<p id='checkpoint' class='no-checkpoint' data-checkpoint='none'><strong>Not "
            "verified against a "
            "checkpoint</strong>: none was given (<code>--checkpoint FILE</code>) and there is "
            f"no <code>{_e(chain.default_checkpoint.name)}</code> next to the store, so this "
            "proves the chain is consistent, not that nothing before its head was rewritten.</p>\n"
        )
    checkpoint = used.checkpoint
    how = " (found next to the store)" if used.found_next_to_store else ""
    problem = chain.report.problem if chain.report is not None else None
    if chain.report is None:
        verdict = "not checked"
    elif problem is not None and problem.source == "checkpoint":
        verdict = f"<strong>does not match</strong>: {_e(problem.reason)}"
    elif problem is not None:
        verdict = "not conclusive while the chain itself is broken"
    else:
        verdict = "<strong>matches</strong>: the log only grew since"
    return (
        "<p id='checkpoint' data-checkpoint='used'>Verified against checkpoint "
        f"<code>{_e(used.path)}</code>{how}: {checkpoint.count} events, head "
        f"<code>{_e(checkpoint.head_hash)}</code>, taken "
        f"{_e(instant_text(checkpoint.created_at_us, zone=True))}; {verdict}.</p>\n"
    )


def _summary(report: Report) -> str:
    transactions = len(report.transactions)
    chips = "".join(
        f"<span class='chip {_outcome_class(outcome)}' data-outcome='{_e(outcome)}' "
        f"data-count='{count}'>"
        f"{_e(outcome)}<b>{count}</b></span>"
        for outcome, count in report.outcomes
    )
    redaction = report.redaction
    return (
        "<section id='summary'>\n<h2>Summary</h2>\n"
        f"<p><strong id='transaction-count'>{transactions}</strong> "
        f"{plural(transactions, 'transaction')}, "
        f"<strong>{len(report.findings)}</strong> {plural(len(report.findings), 'finding')}, "
        f"{counted(redaction.events, 'event')} in the selection.</p>\n"
        f"<div class='chips' id='outcomes'>{chips or '<span class=none>none</span>'}</div>\n"
        "</section>\n"
    )


# --- transactions ---------------------------------------------------------------------


def _transactions(report: Report, anchors: dict[str, str]) -> str:
    rows = "".join(
        _transaction(item, anchors[item.timeline.transaction.transaction_key])
        for item in report.transactions
    )
    if not rows:
        return (
            "<section id='transactions'>\n<h2>Transactions</h2>\n"
            "<p class='none'>No transaction in the selection.</p>\n</section>\n"
        )
    return (
        f"<section id='transactions'>\n<h2>Transactions ({len(report.transactions)})</h2>\n"
        "<p class='muted'>Open a transaction for its timeline: every message with its time "
        "since the request, abort windows, action waits, aborts and findings.</p>\n"
        "<div class='tools' id='txn-tools' hidden><button type='button' id='open-all'>"
        "Open all</button><button type='button' id='close-all'>Close all</button></div>\n"
        "<div class='txn-table' id='transactions-table'>\n"
        "<div class='row txn-head'><span>transaction key</span><span>requested (UTC)</span>"
        "<span>operation</span><span class='num'>amount</span><span>outcome</span>"
        "<span class='num'>duration</span><span class='num'>findings</span></div>\n"
        f"{rows}</div>\n</section>\n"
    )


def _transaction(item: ReportTransaction, anchor: str) -> str:
    timeline = item.timeline
    txn = timeline.transaction
    findings = len(timeline.findings)
    operation = " ".join(filter(None, (txn.operation, txn.transaction_type)))
    duration = "no response" if txn.duration_ms is None else f"{_ms(txn.duration_ms)} ms"
    css = "txn has-findings" if findings else "txn"
    return (
        f"<details class='{css}' id='{anchor}' data-transaction-key='{_e(txn.transaction_key)}'"
        f" data-outcome='{_e(txn.outcome)}'>\n<summary class='row'>"
        f"<span class='mono'>{_e(txn.transaction_key)}</span>"
        f"<span>{_e(instant_text(txn.requested_at, places=3))}</span>"
        f"<span>{_e(operation)}</span>"
        f"<span class='num'>{_e(money(txn.amount, txn.currency) or '')}</span>"
        f"<span class='{_outcome_class(txn.outcome)}'>{_e(txn.outcome)}</span>"
        f"<span class='num'>{_e(duration)}</span>"
        f"<span class='num nf'>{findings}</span></summary>\n"
        f"<div class='txn-body timeline-body'>\n{_transaction_facts(timeline)}"
        f"{_svg(timeline)}{_legend()}{_events(item)}{_details_tables(timeline)}</div>\n"
        "</details>\n"
    )


def _transaction_facts(timeline: Timeline) -> str:
    txn = timeline.transaction
    operation = " ".join(filter(None, (txn.operation, txn.transaction_type)))
    if txn.resource:
        operation += f" on {txn.resource}"
    if txn.referenced_transaction_identifier:
        operation += f" of {txn.referenced_transaction_identifier}"
    outcome = txn.outcome
    why = txn.error_type or txn.status_details_code
    if why and why != outcome:
        outcome += f" ({why})"
    completed = (
        f"{instant_text(txn.completed_at, zone=True)} (+{_ms(txn.duration_ms)} ms)"
        if txn.completed_at is not None
        else "no response recorded"
    )
    return _facts(
        [
            ("session", f"<code>{_e(txn.session_id)}</code> tag <code>{_e(txn.tag)}</code>"),
            ("operation", _e(operation)),
            ("amount", _e(money(txn.amount, txn.currency) or "not given")),
            ("outcome", f"<span class='{_outcome_class(txn.outcome)}'>{_e(outcome)}</span>"),
            ("identifier", _e(txn.transaction_identifier or "none")),
            ("requested", _e(instant_text(txn.requested_at, zone=True))),
            ("completed", _e(completed)),
            ("abort requested", "yes" if txn.abort_requested else "no"),
            (
                "counts",
                f"{counted(txn.update_count, 'update')}, "
                f"{counted(txn.action_count, 'action')}, "
                f"{counted(len(timeline.events), 'event')}, "
                f"{counted(len(timeline.findings), 'finding')}",
            ),
        ]
    )


# The timeline drawing: lanes on a shared axis of milliseconds since the request.
_WIDTH, _LEFT, _RIGHT = 1000, 120, 16
_LANES = (("messages", 8), ("abort windows", 34), ("action waits", 60))
_LANE_HEIGHT = 20
_AXIS_Y = 90


def _svg(timeline: Timeline) -> str:
    offset = timeline.offset_ms
    txn = timeline.transaction
    ends = [txn.duration_ms or 0.0]
    ends += [event.offset_ms for event in timeline.events]
    end_ms = max(max(ends), 1.0)
    span = _WIDTH - _LEFT - _RIGHT

    def x(ms: float | None) -> float:
        value = end_ms if ms is None else min(max(ms, 0.0), end_ms)
        return round(_LEFT + span * value / end_ms, 2)

    shapes: list[str] = []
    for label, y in _LANES:
        shapes.append(
            f"<text x='0' y='{y + 14}'>{label}</text>"
            f"<rect class='lane' x='{_LEFT}' y='{y}' width='{span}' height='{_LANE_HEIGHT}'/>"
        )
    messages_y, windows_y, waits_y = (y for _, y in _LANES)
    for event in timeline.events:
        sender = event.sender if event.sender in _SENDERS else "tap"
        at = x(event.offset_ms)
        tip = f"seq {event.seq} +{_ms(event.offset_ms)} ms {_sender(event.sender)} " + (
            f"{event.msg_type or event.kind} {event.summary}"
        )
        shapes.append(
            f"<line class='ev {sender}' x1='{at}' x2='{at}' y1='{messages_y + 2}' "
            f"y2='{messages_y + _LANE_HEIGHT - 2}'><title>{_e(tip)}</title></line>"
        )
    for window in timeline.abort_windows:
        start, stop = x(offset(window.opened_at)), x(offset(window.closed_at))
        closes = (
            f"closes +{_ms(offset(window.closed_at))} ms ({_ms(window.duration_ms)} ms)"
            if window.closed_at is not None
            else "never closes"
        )
        css = "window" if window.closed_at is not None else "window open-ended"
        shapes.append(
            f"<rect class='{css}' x='{start}' y='{windows_y + 3}' "
            f"width='{max(stop - start, 1.5):.2f}' height='{_LANE_HEIGHT - 6}'><title>"
            f"{_e(f'abort window opens +{_ms(offset(window.opened_at))} ms, {closes}')}"
            "</title></rect>"
        )
    for wait in timeline.action_waits:
        start, stop = x(offset(wait.asked_at)), x(offset(wait.answered_at))
        answered = (
            f"answered with {wait.answer} after {_ms(wait.wait_ms)} ms"
            if wait.answered_at is not None
            else "never answered"
        )
        css = "wait" if wait.answered_at is not None else "wait open-ended"
        action = wait.action or "action"
        shapes.append(
            f"<rect class='{css}' x='{start}' y='{waits_y + 3}' "
            f"width='{max(stop - start, 1.5):.2f}' height='{_LANE_HEIGHT - 6}'><title>"
            f"{_e(f'{action} asked +{_ms(offset(wait.asked_at))} ms, {answered}')}"
            "</title></rect>"
        )
    for abort in timeline.aborts:
        at = x(offset(abort.requested_at))
        top = messages_y - 6
        what = "while abortable" if abort.was_abortable else "while NOT abortable"
        shapes.append(
            f"<path class='abort' d='M{at - 5} {top} L{at + 5} {top} L{at} {top + 7} Z'><title>"
            f"{_e(f'abort requested +{_ms(offset(abort.requested_at))} ms {what}')}"
            "</title></path>"
        )
    at_seq = {event.seq: event for event in timeline.events}
    for finding in timeline.findings:
        flagged = at_seq.get(finding.seq)
        cx = x(flagged.offset_ms if flagged is not None else None)
        shapes.append(
            f"<circle class='finding' cx='{cx}' cy='{messages_y + _LANE_HEIGHT + 2}' r='4'>"
            f"<title>{_e(f'finding at seq {finding.seq}: {finding.rule}: {finding.detail}')}"
            "</title></circle>"
        )
    shapes.append(
        f"<line class='axis' x1='{_LEFT}' x2='{_LEFT + span}' y1='{_AXIS_Y}' y2='{_AXIS_Y}'/>"
    )
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        at = _LEFT + span * fraction
        anchor = "start" if fraction == 0 else "end" if fraction == 1 else "middle"
        shapes.append(
            f"<line class='axis' x1='{at}' x2='{at}' y1='{_AXIS_Y}' y2='{_AXIS_Y + 4}'/>"
            f"<text x='{at}' y='{_AXIS_Y + 16}' text-anchor='{anchor}'>"
            f"{_ms(end_ms * fraction, places=1)} ms</text>"
        )
    height = _AXIS_Y + 22
    return (
        f"<svg class='timeline' viewBox='0 0 {_WIDTH} {height}' role='img' "
        f"aria-label='timeline of the transaction, {_ms(end_ms, places=1)} ms'>"
        + "".join(shapes)
        + "</svg>\n"
    )


def _legend() -> str:
    items = (
        ("client", "POS message"),
        ("server", "server message"),
        ("tap", "tap event"),
        ("window", "abort window"),
        ("wait", "action waiting"),
        ("abort", "abort request"),
        ("finding", "finding"),
    )
    return (
        "<div class='legend'>"
        + "".join(f"<span><i class='sw {css}'></i>{label}</span>" for css, label in items)
        + " <span>(pale: never closed)</span></div>\n"
    )


def _events(item: ReportTransaction) -> str:
    rows = "".join(
        _event_row(event, item.contents.get(event.seq)) for event in item.timeline.events
    )
    return (
        "<h3>Messages</h3>\n<table class='events'><thead><tr><th class='num'>seq</th>"
        "<th class='num'>+ms</th><th>from</th><th>message</th><th>what</th><th>payload</th>"
        f"</tr></thead><tbody>\n{rows}</tbody></table>\n"
    )


def _event_row(event: TimelineEvent, content: EventContent | None) -> str:
    findings = any(marker.kind == "finding" for marker in event.markers)
    markers = "".join(
        f"<div class='marker {_e(marker.kind)}'>"
        f"{'!! FINDING ' if marker.kind == 'finding' else '» '}{_e(marker.text)}</div>"
        for marker in event.markers
    )
    sender = event.sender if event.sender in _SENDERS else "tap"
    message = event.msg_type or event.kind
    return (
        f"<tr class='{'event finding-row' if findings else 'event'}' data-seq='{event.seq}'>"
        f"<td class='num'>{event.seq}</td><td class='num'>{_ms(event.offset_ms)}</td>"
        f"<td class='from-{sender}'>{_e(_sender(event.sender))}</td>"
        f"<td class='mono msg-type'>{_e(message)}</td>"
        f"<td>{_e(event.summary)}{markers}</td><td>{_content(event.seq, content)}</td></tr>\n"
    )


def _content(seq: int, content: EventContent | None) -> str:
    if content is None or (content.payload is None and content.raw is None):
        return "<span class='none'>none</span>"
    blocks = []
    if content.payload is not None:
        blocks.append(_pre(content.payload))
    if content.raw is not None:
        label = "bytes as sent (not JSON)" if content.payload is None else "bytes as sent"
        blocks.append(f"<div class='muted'>{label}</div>{_pre(content.raw)}")
    return f"<details class='payload'><summary>seq {seq}</summary>{''.join(blocks)}</details>"


def _pre(text: str) -> str:
    if len(text) <= CONTENT_LIMIT:
        return f"<pre>{_e(text)}</pre>"
    more = len(text) - CONTENT_LIMIT
    return (
        f"<pre>{_e(text[:CONTENT_LIMIT])}</pre><div class='muted'>… {more} more characters "
        "(<code>p3log sql</code> shows the whole event)</div>"
    )


def _details_tables(timeline: Timeline) -> str:
    return "".join(
        _table(section.title, section.columns, section.rows, css=section.name)
        for section in timeline_sections(timeline)
    )


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], css: str) -> str:
    if not rows:
        return (
            f"<p class='empty {css}'><strong>{title}</strong>: <span class='none'>none</span></p>\n"
        )
    numeric = [column.endswith("ms") or column == "seq" for column in columns]
    head = "".join(
        f"<th class='num'>{column}</th>" if num else f"<th>{column}</th>"
        for column, num in zip(columns, numeric, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{_e(cell)}</td>" if num else f"<td>{_e(cell)}</td>"
            for cell, num in zip(row, numeric, strict=True)
        )
        + "</tr>\n"
        for row in rows
    )
    return (
        f"<h3>{title}</h3>\n<table class='compact {css}'><thead><tr>{head}</tr></thead>"
        f"<tbody>\n{body}</tbody></table>\n"
    )


# --- findings and redaction -------------------------------------------------------------


def _findings(findings: Sequence[FindingRow], anchors: dict[str, str]) -> str:
    if not findings:
        return (
            "<section id='findings'>\n<h2>Protocol findings</h2>\n"
            "<p class='none'>No protocol rule was broken in the selection.</p>\n</section>\n"
        )
    rows = []
    for finding in findings:
        key = finding.transaction_key
        if key is not None and key in anchors:
            where = f"<a class='mono' href='#{anchors[key]}'>{_e(key)}</a>"
        elif key is not None:
            where = f"<span class='mono'>{_e(key)}</span>"
        else:
            where = f"session <span class='mono'>{_e(finding.session_id)}</span>"
        rows.append(
            f"<tr class='finding' data-rule='{_e(finding.rule)}'><td class='num'>{finding.seq}"
            f"</td><td>{where}</td><td class='mono nowrap'>{_e(finding.rule)}</td>"
            f"<td>{_e(finding.detail)}</td></tr>\n"
        )
    return (
        f"<section id='findings'>\n<h2>Protocol findings ({len(findings)})</h2>\n"
        "<p class='muted'>Rules of the P3 lifecycle broken at an event "
        "(docs/projections.md lists them).</p>\n"
        "<table id='findings-table'><thead><tr><th class='num'>seq</th>"
        "<th>transaction (or session)</th><th>rule</th><th>detail</th></tr></thead><tbody>\n"
        f"{''.join(rows)}</tbody></table>\n</section>\n"
    )


def _redaction(report: Report) -> str:
    redaction = report.redaction
    rows = "".join(
        f"<tr data-rule='{_e(rule.name)}'><td class='nowrap'><code>{_e(rule.name)}</code></td>"
        f"<td><strong>{_e(rule.title)}</strong><br>{_e(rule.description)}</td>"
        f"<td class='num fired'>{rule.events}</td></tr>\n"
        for rule in redaction.rules
    )
    caveat = (
        ""
        if redaction.known_policy
        else "<p class='marker finding'>This p3log describes another policy than the "
        "store's; the rules below are this p3log's, not necessarily the store's.</p>\n"
    )
    others = [
        (policy, count) for policy, count in redaction.event_policies if policy != redaction.policy
    ]
    mixed = (
        "<p class='marker finding'>Events in the selection name another policy: "
        + ", ".join(f"<code>{_e(policy)}</code> ({count})" for policy, count in others)
        + "</p>\n"
        if others
        else ""
    )
    return (
        "<section id='redaction'>\n<h2>Redaction</h2>\n"
        f"<p>Policy in force: <code id='redaction-policy'>{_e(redaction.policy)}</code>. "
        "Redaction is applied to the bytes before they are parsed, journaled, indexed or "
        "exported: the store, and so this report, never holds a merchant secret or a full "
        "card number.</p>\n"
        f"{caveat}{mixed}"
        "<table id='redaction-rules'><thead><tr><th>rule</th><th>what it does</th>"
        "<th class='num'>events changed in the selection</th></tr></thead><tbody>\n"
        f"{rows}</tbody></table>\n"
        f"<p>{redaction.redacted_events} of the {redaction.events} "
        f"{plural(redaction.events, 'event')} in the selection were changed by redaction "
        "(counted from <code>events.redactions</code>).</p>\n</section>\n"
    )


def _footer(report: Report) -> str:
    return (
        "<footer>Generated by <code>p3log report</code> at "
        f"{_e(instant_text(report.generated_at_us, zone=True))} "
        f"from <code>{_e(report.store)}</code>. "
        "This file is self-contained: it loads nothing when opened (its "
        "Content-Security-Policy forbids every fetch).</footer>\n"
    )


# --- small helpers ----------------------------------------------------------------------


def _e(value: object) -> str:
    """Text for HTML (content or a quoted attribute): escaped, and every character a
    terminal or browser would obey rather than show (controls, bidi overrides, lone
    surrogates; `p3log.visible`) shown as its escape. Newlines and tabs stay."""
    return escape(visible("" if value is None else str(value), keep="\n\t"), quote=True)


def _facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list; the values are HTML already."""
    return (
        "<dl class='facts'>"
        + "".join(f"<dt>{_e(label)}</dt><dd>{value}</dd>" for label, value in items)
        + "</dl>\n"
    )


def _outcome_class(outcome: str) -> str:
    return _OUTCOME_CLASSES.get(outcome, "o-other")


def _sender(sender: str) -> str:
    return _SENDERS.get(sender, sender)


def _ms(value: float | None, places: int = 3) -> str:
    return "" if value is None else f"{value:.{places}f}"


def write_html(report: Report, out: Path) -> None:
    """Render `report` into the file `out`, replacing it whole (written beside it, then
    renamed, so a reader never sees half a report)."""
    text = render_html(report)
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}") from exc
