"""Query results as a terminal table, JSON or CSV: the formats every command offers;
and the projections' own views of them (`p3log transactions`, `findings`, `show`).

Tables and timelines show recorded text as `Text` made `visible` (never parsed as
markup or emoji, controls escaped: `p3log.visible`); JSON and CSV keep it exact."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import attrs
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table
from rich.text import Text

from p3log.projections.listing import FINDING_COLUMNS, TRANSACTION_COLUMNS, Listing
from p3log.projections.timeline import (
    MarkerKind,
    Timeline,
    instant_fields,
    money,
    ms_text,
    timeline_sections,
    unique_prefix,
)
from p3log.visible import visible
from p3log.wording import counted, instant_text, iso_text


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class TimelineFormat(StrEnum):
    """What `p3log show` offers: a timeline is not one table, so no CSV."""

    table = "table"
    json = "json"


def render_rows(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: OutputFormat,
    title: str | None = None,
    right: Collection[str] = (),
) -> None:
    """Rows as JSON records, CSV with a header, or a table (in which numbers, and the
    columns named in `right`, are right-aligned)."""
    if fmt is OutputFormat.json:
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        console.out(json.dumps(records, default=_json_default, indent=2), highlight=False)
    elif fmt is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        # The csv module quotes a field holding "\n" (the line terminator) but not one
        # holding a lone "\r", which readers take for a line end: quote every field of
        # such a row.
        quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in [columns, *([_cell(value) for value in row] for row in rows)]:
            (quoted if any("\r" in cell for cell in row) else writer).writerow(row)
        # Straight to the file: Rich's own output drops some control characters.
        console.file.write(buffer.getvalue())
        console.file.flush()
    else:
        table = Table(title=_text(title) if title else None, show_lines=False)
        cells = [[_text(_cell(value)) for value in row] for row in rows]
        for index, column in enumerate(columns):
            numeric = column in right or _numeric(row[index] for row in rows)
            table.add_column(
                _text(column),
                overflow="fold",
                justify="right" if numeric else "left",
                min_width=_longest_word([_text(column), *(cell[index] for cell in cells)]),
            )
        for cell_row in cells:
            table.add_row(*cell_row)
        print_table(console, table)


def print_table(console: Console, table: Table) -> None:
    """A table as wide as its content when stdout is not a terminal (a pipe, a file: no
    line is wrapped at 80 columns, each row stays one line); in a terminal, at its width,
    with no identifier broken (each column is at least as wide as its longest word, so
    a terminal too narrow for those gets the table at that least width, uncropped)."""
    natural = Measurement.get(console, console.options.update(width=_UNBOUNDED), table)
    terminal_width = max(console.width, natural.minimum)
    width = terminal_width if console.is_terminal else max(natural.maximum, 1)
    # Console.print never renders wider than the console: render at `width` first.
    rendered = console.render(table, console.options.update(width=width))
    console.print(Segments(rendered), crop=False)


_UNBOUNDED = 1_000_000


def _longest_word(texts: Iterable[Text]) -> int:
    """The widest run without whitespace: an identifier (a key, a message type, a rule,
    a column name) the table must not fold."""
    return max(
        (
            cell_len(word)
            for text in texts
            for line in text.plain.splitlines()
            for word in line.split()
        ),
        default=1,
    )


def _text(value: str | Text, style: str = "") -> Text:
    """Text for a table or timeline: shown as it is, controls escaped (`visible`)."""
    if isinstance(value, Text):
        return value
    return Text(visible(value), style=style)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _numeric(values: Iterable[Any]) -> bool:
    """Right-align a column whose values are all numbers (None aside)."""
    present = [value for value in values if value is not None]
    return bool(present) and all(
        isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        for value in present
    )


# --- projections --------------------------------------------------------------------

KEY_PREFIX_MIN = 4
"""Characters of the tag a short key shows at least (after `<session_id>:`)."""

_OUTCOME_STYLES = {
    "APPROVED": "green",
    "DECLINED": "yellow",
    "ABORTED": "yellow",
    "ERROR": "red",
    "INCOMPLETE": "bold red",
}
_MARKER_STYLES: dict[MarkerKind, str] = {
    "window_opened": "cyan",
    "window_closed": "cyan",
    "action_asked": "magenta",
    "action_answered": "magenta",
    "abort": "yellow",
    "abort_answered": "yellow",
    "finding": "bold red",
}
_SENDERS = {"client": "POS →", "server": "← server", "tap": "tap"}


def short_key(key: str, neighbours: Iterable[str | None]) -> str:
    """A transaction key cut to the shortest prefix `p3log show` still resolves to it
    (given its neighbours in sorted key order), keeping at least `KEY_PREFIX_MIN`
    characters of the tag."""
    session, _, _ = key.partition(":")
    return unique_prefix(key, neighbours, minimum=len(session) + 1 + KEY_PREFIX_MIN)


def render_transactions(console: Console, listing: Listing, fmt: OutputFormat) -> None:
    """Rows of `TRANSACTION_COLUMNS`. JSON and CSV give every column; the table, to stay
    readable in 100 columns, a short key and the columns an auditor scans for."""
    rows, neighbours = listing.rows, listing.neighbours
    if fmt is not OutputFormat.table:
        render_rows(console, TRANSACTION_COLUMNS, rows, fmt)
        return
    at = {name: index for index, name in enumerate(TRANSACTION_COLUMNS)}
    table_rows = [
        (
            short_key(row[at["transaction_key"]], neighbours[index]),
            instant_text(row[at["requested_at"]], places=3),
            row[at["operation"]],
            money(row[at["amount"]], row[at["currency"]]) or "",
            row[at["outcome"]],
            ms_text(row[at["duration_ms"]]),
        )
        for index, row in enumerate(rows)
    ]
    render_rows(
        console,
        ("key", "requested (UTC)", "op", "amount", "outcome", "ms"),
        table_rows,
        fmt,
        title=counted(len(rows), "transaction"),
        right=("amount", "ms"),
    )


def render_findings(console: Console, listing: Listing, fmt: OutputFormat) -> None:
    """Rows of `FINDING_COLUMNS`. The table names the transaction by its short key, or
    the session for a finding that belongs to no transaction."""
    rows, neighbours = listing.rows, listing.neighbours
    if fmt is not OutputFormat.table:
        render_rows(console, FINDING_COLUMNS, rows, fmt)
        return
    table_rows = []
    for index, (session, key, seq, rule, detail) in enumerate(rows):
        where = short_key(key, neighbours[index]) if key else f"session {session}"
        table_rows.append((seq, where, rule, detail))
    render_rows(
        console,
        ("seq", "transaction (or session)", "rule", "detail"),
        table_rows,
        fmt,
        title=counted(len(rows), "finding"),
    )


def render_timeline(console: Console, timeline: Timeline, fmt: TimelineFormat) -> None:
    """One transaction for `p3log show`: a header, every event with the projections'
    markers, then its abort windows, action waits, aborts, findings and latencies.
    JSON gives the same data as one object (times ISO 8601 UTC, offsets in ms)."""
    if fmt is TimelineFormat.json:
        console.out(
            json.dumps(timeline_record(timeline), default=_json_default, indent=2),
            highlight=False,
        )
        return
    print_table(console, _timeline_header(timeline))
    print_table(console, _timeline_events(timeline))
    for section in timeline_sections(timeline):
        _section(console, section.title, section.columns, section.rows)


def timeline_record(timeline: Timeline) -> dict[str, Any]:
    """A timeline as plain JSON-ready data: instants as ISO 8601 UTC text."""
    record = _record(timeline)
    assert isinstance(record, dict)
    return record


def _record(value: Any) -> Any:
    """Records (attrs classes, and the projections' NamedTuple rows) as dicts."""
    kind = type(value)
    if attrs.has(kind):
        names: Sequence[str] = [field.name for field in attrs.fields(kind)]
    elif isinstance(value, tuple) and hasattr(kind, "_fields"):
        names = kind._fields
    elif isinstance(value, tuple | list):
        return [_record(item) for item in value]
    else:
        return value
    instants = instant_fields(kind)
    return {
        name: iso_text(getattr(value, name)) if name in instants else _record(getattr(value, name))
        for name in names
    }


def _timeline_header(timeline: Timeline) -> Table:
    txn = timeline.transaction
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    outcome = _text(txn.outcome, style=_OUTCOME_STYLES.get(txn.outcome, ""))
    why = txn.error_type or txn.status_details_code
    if why and why != txn.outcome:
        outcome.append(f" ({visible(why)})")
    operation = " ".join(filter(None, (txn.operation, txn.transaction_type)))
    if txn.resource:
        operation += f" on {txn.resource}"
    if txn.referenced_transaction_identifier:
        operation += f" of {txn.referenced_transaction_identifier}"
    completed = (
        f"{instant_text(txn.completed_at)} (+{ms_text(txn.duration_ms)} ms)"
        if txn.completed_at is not None
        else "no response recorded"
    )
    findings = len(timeline.findings)
    counts = ", ".join(
        counted(number, noun)
        for number, noun in (
            (txn.update_count, "update"),
            (txn.action_count, "action"),
            (len(timeline.events), "event"),
            (findings, "finding"),
        )
    )
    for label, value in (
        ("transaction", txn.transaction_key),
        ("session", f"{txn.session_id}  tag {txn.tag}"),
        ("operation", operation),
        ("amount", money(txn.amount, txn.currency) or "not given"),
        ("outcome", outcome),
        ("identifier", txn.transaction_identifier or "none"),
        ("requested", instant_text(txn.requested_at) + " UTC"),
        ("completed", completed),
        ("abort requested", "yes" if txn.abort_requested else "no"),
        ("counts", Text(counts, style="bold red" if findings else "")),
    ):
        grid.add_row(label, _text(value))
    return grid


def _timeline_events(timeline: Timeline) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="Events", title_justify="left"
    )
    table.add_column("seq", justify="right")
    table.add_column("+ms", justify="right")
    table.add_column("from", no_wrap=True)
    table.add_column(
        "message",
        overflow="fold",
        min_width=_longest_word(_text(event.msg_type or event.kind) for event in timeline.events),
    )
    table.add_column("what", overflow="fold")
    for event in timeline.events:
        what = _text(event.summary)
        for marker in event.markers:
            if what:
                what.append("\n")
            prefix = "!! FINDING " if marker.kind == "finding" else "» "
            what.append(prefix + visible(marker.text), style=_MARKER_STYLES[marker.kind])
        table.add_row(
            str(event.seq),
            ms_text(event.offset_ms),
            _text(_SENDERS.get(event.sender, event.sender)),
            _text(event.msg_type or event.kind),
            what,
        )
    return table


def _section(
    console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    if rows:
        times = [column for column in columns if column.endswith("ms")]
        render_rows(console, columns, rows, OutputFormat.table, title=title, right=times)
    else:
        console.print(_text(f"{title}: none"))
