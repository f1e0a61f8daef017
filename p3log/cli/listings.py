"""What the projections say: transactions, show, findings, and the auditor's report.

The listings and the report select rows with one typed `Selection`
(`p3log.projections.listing`), built from the same `--since`/`--until` options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from p3log.cli import core
from p3log.cli.core import (
    EXIT_FAILED_CHECK,
    StoreOption,
    app,
    complain,
    reading,
    say,
    user_errors,
)
from p3log.projections import RULES
from p3log.projections.listing import (
    OUTCOMES,
    Selection,
    check_outcomes,
    check_rules,
    list_findings,
    list_transactions,
)
from p3log.projections.timeline import load_timeline
from p3log.render import OutputFormat, TimelineFormat, render_findings, render_timeline
from p3log.render import render_transactions as render_transaction_rows
from p3log.report import build_report, write_html
from p3log.settings import OptionError
from p3log.wording import counted

SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Requested at or after: an ISO 8601 date or datetime (no zone: UTC).",
        show_default=False,
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="WHEN",
        help="Requested at or before: an ISO 8601 datetime, or a date (to its end); no zone: UTC.",
        show_default=False,
    ),
]


def _choices(option: str, values: Sequence[str] | None) -> list[str]:
    """A repeatable option whose values may also be comma-separated; given but empty
    is refused."""
    chosen = [part.strip() for value in values or () for part in value.split(",") if part.strip()]
    if values and not chosen:
        raise OptionError(f"{option} needs at least one value")
    return chosen


@app.command()
@user_errors
def transactions(
    store: StoreOption,
    since: SinceOption = None,
    until: UntilOption = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option(
            metavar="OUTCOME",
            help=f"Only these outcomes ({', '.join(OUTCOMES)}, or another the store holds): "
            "repeat the option or separate by commas; any case.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """List the transactions (execute and amend requests) in the order they were requested."""
    selection = Selection.from_options(
        since=since, until=until, outcomes=_choices("--outcome", outcome)
    )
    with reading(store) as con:
        check_outcomes(con, selection)
        render_transaction_rows(core.console, list_transactions(con, selection), fmt)


@app.command()
@user_errors
def show(
    store: StoreOption,
    key: Annotated[
        str,
        typer.Argument(
            metavar="KEY",
            help="A transaction key, a unique prefix of one, or the server's transaction "
            "identifier.",
            show_default=False,
        ),
    ],
    fmt: Annotated[TimelineFormat, typer.Option("--format")] = TimelineFormat.table,
) -> None:
    """Show one transaction's timeline: every message with its timing, abort windows,
    action waits, aborts, findings and latencies."""
    with reading(store) as con:
        timeline = load_timeline(con, key)
    render_timeline(core.console, timeline, fmt)


@app.command()
@user_errors
def findings(
    store: StoreOption,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            metavar="RULE",
            help="Only these rules (repeat the option or separate by commas); "
            f"one of {', '.join(RULES)}.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """List the protocol rules broken, in the order they were broken."""
    rules = _choices("--rule", rule)
    check_rules(rules)
    with reading(store) as con:
        render_findings(core.console, list_findings(con, rules), fmt)


@app.command()
@user_errors
def report(
    store: StoreOption,
    out: Annotated[
        Path,
        typer.Option("--out", metavar="FILE", help="The HTML file to write.", show_default=False),
    ],
    transaction: Annotated[
        str | None,
        typer.Option(
            "--transaction",
            metavar="KEY",
            help="Only this transaction: a key, a unique prefix of one, or the server's "
            "transaction identifier.",
            show_default=False,
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            metavar="FILE",
            help="Verify against this checkpoint; by default <store>.checkpoint.json next "
            "to the store, when there is one.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the auditor's report: one self-contained HTML file with the hash-chain
    status, the transactions and their timelines, the findings and the redaction rules.
    Exits 1 when the chain is not verified OK (the report is written all the same)."""
    target = out
    selection = Selection.from_options(key=transaction, since=since, until=until)
    if not target.parent.is_dir():
        raise OptionError(f"cannot write {target}: no directory {target.parent}")
    built = build_report(store, selection, checkpoint)
    write_html(built, target)
    chain = built.chain
    status = chain.label
    if chain.report is not None and chain.report.problem is not None:
        status += f" at {chain.report.problem}"
    line = (
        f"report: {counted(len(built.transactions), 'transaction')}, chain {status}, "
        f"written to {target}"
    )
    if not chain.ok:
        complain(line)
        raise typer.Exit(EXIT_FAILED_CHECK)
    say(line)
