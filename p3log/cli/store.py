"""The store's own commands: sql, verify, checkpoint, export, import, rebuild."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from p3log.cli import core
from p3log.cli.core import (
    EXIT_FAILED_CHECK,
    DialectOption,
    RedactionKeyOption,
    StoreOption,
    app,
    one_of,
    reading,
    say,
    user_errors,
)
from p3log.projections.export import export_parquet
from p3log.projections.opening import (
    make_checkpoint,
    rebuild_projections,
    verify_store,
)
from p3log.protocol.dialect import load_dialect
from p3log.render import OutputFormat, render_rows
from p3log.store.errors import StoreError
from p3log.store.readonly import select_statement
from p3log.store.transfer import ExportFormat, export_store, import_jsonl
from p3log.store.verify import Checkpoint
from p3log.visible import visible
from p3log.wording import counted


@app.command()
@user_errors
def verify(
    store: StoreOption,
    against: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="A checkpoint file: also prove the log only grew since."),
    ] = None,
) -> None:
    """Recompute the hash chain over the journal and the index."""
    checkpoint = Checkpoint.from_file(against) if against else None
    report = verify_store(store, against=checkpoint)
    if report.problem is not None:
        core.errors.print(f"verify FAILED at {visible(str(report.problem))}")
        raise typer.Exit(EXIT_FAILED_CHECK)
    lag = report.count - report.indexed
    say(
        f"verify OK: {counted(report.count, 'event')}, head {report.head_hash}"
        + (f" (matches checkpoint of {checkpoint.count} events)" if checkpoint else "")
        + (f"; {lag} journaled events are indexed when the store is next opened" if lag else "")
    )


@app.command()
@user_errors
def checkpoint(
    store: StoreOption,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write here instead of stdout."),
    ] = None,
) -> None:
    """Write the log's size and head hash, for the auditor to keep outside the store."""
    text = make_checkpoint(store).to_json()
    if out is None:
        core.console.out(text, end="", highlight=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror}") from exc
    say(f"checkpoint written to {out}")


@app.command("import")
@user_errors
def import_(
    store: StoreOption,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="A JSONL file of events (export format).", show_default=False
        ),
    ],
    redaction_key: RedactionKeyOption = None,
) -> None:
    """Append the events of a JSONL file to a store (created if missing): all of them or,
    if the file is damaged, cut short or already imported, none."""
    count = import_jsonl(store, source)
    say(f"imported {counted(count, 'event')} into {store}")


@app.command()
@user_errors
def export(
    store: StoreOption,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="PATH",
            help="Output file (jsonl) or directory (parquet); required.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format")] = "jsonl",
    force: Annotated[
        bool, typer.Option("--force", help="parquet: replace an earlier export at --out.")
    ] = False,
    to: Annotated[Path | None, typer.Option("--to", hidden=True)] = None,
) -> None:
    """Write every event, in seq order, as JSONL (importable); or the events and every
    projection as Parquet partitioned by day and resource, for any Parquet engine."""
    target: Path = one_of("--out", out, {"--to": to})
    if fmt == "jsonl":
        count = export_store(store, fmt, target)
        say(f"exported {counted(count, 'event')} to {target}")
        return
    manifest = export_parquet(store, target, replace=force)
    say(
        f"exported {counted(manifest.tables['events'].rows, 'event')} and "
        f"{counted(manifest.projection_rows, 'projection row')} to {target} "
        "(Parquet by day and resource)"
    )


@app.command()
@user_errors
def sql(
    store: StoreOption,
    query: Annotated[
        str,
        typer.Argument(
            metavar="QUERY", help="One SELECT over the store's views.", show_default=False
        ),
    ],
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """Run one SELECT over the store's views (events, transactions, ...); it can read
    nothing else and change nothing (see docs/store.md, "Reading")."""
    select_statement(query)
    with reading(store) as con:
        result = con.execute(query)
        columns = [column[0] for column in result.description or []]
        rows = result.fetchall()
    render_rows(core.console, columns, rows, fmt)


@app.command()
@user_errors
def rebuild(store: StoreOption, dialect: DialectOption = None) -> None:
    """Fold every event again into fresh projection tables (transactions, findings, ...).
    Needs the store to itself: stop a tap recording into it first."""
    chosen = load_dialect(dialect) if dialect is not None else None
    with Progress(
        TextColumn("folding events"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=core.errors,
        transient=True,
        disable=not core.errors.is_terminal,
    ) as progress:
        task = progress.add_task("rebuild", total=None)

        def advance(folded: int, total: int) -> None:
            progress.update(task, completed=folded, total=total)

        started = time.perf_counter()
        count = rebuild_projections(store, dialect=chosen, progress=advance)
        elapsed = time.perf_counter() - started
    with reading(store) as con:
        ((transaction_count, finding_count),) = con.execute(
            "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM protocol_findings)"
        ).fetchall()
    say(
        f"rebuilt projections from {counted(count, 'event')} in {elapsed:.2f} s: "
        f"{counted(transaction_count, 'transaction')}, {counted(finding_count, 'finding')}"
    )
