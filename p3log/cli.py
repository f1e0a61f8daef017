"""The p3log command line: one thin command per user task.

Commands only parse arguments, call the library and print; every user-facing
failure is a `StoreError` or `DialectError` that becomes one line on stderr and a
non-zero exit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import duckdb
import typer
from rich.console import Console

from p3log.demo import run_demo
from p3log.protocol.dialect import DialectError
from p3log.render import OutputFormat, render_rows
from p3log.store.errors import StoreError
from p3log.store.read import open_store
from p3log.store.transfer import ExportFormat, export_store, import_jsonl
from p3log.store.verify import Checkpoint, make_checkpoint, verify_store

app = typer.Typer(
    help="Record, audit and replay PayProtocol (P3) payment-terminal traffic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

EXIT_FAILED_CHECK = 1
EXIT_BAD_INPUT = 2

StoreOption = Annotated[Path, typer.Option("--store", help="Store directory.", show_default=False)]
P = ParamSpec("P")
R = TypeVar("R")


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can fix into one plain line and exit code 2."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (StoreError, DialectError) as exc:
            errors.print(f"p3log: {exc}", highlight=False, markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return run


@app.command()
@user_errors
def verify(
    store: StoreOption,
    against: Annotated[
        Path | None,
        typer.Option(help="A checkpoint file: also prove the log only grew since."),
    ] = None,
) -> None:
    """Recompute the hash chain over the journal and the index."""
    checkpoint = Checkpoint.from_file(against) if against else None
    report = verify_store(store, against=checkpoint)
    if report.problem is not None:
        errors.print(f"verify FAILED at {report.problem}", highlight=False, markup=False)
        raise typer.Exit(EXIT_FAILED_CHECK)
    lag = report.count - report.indexed
    console.print(
        f"verify OK: {report.count} events, head {report.head_hash}"
        + (f" (matches checkpoint of {checkpoint.count} events)" if checkpoint else "")
        + (f"; {lag} journaled events are indexed when the store is next opened" if lag else ""),
        highlight=False,
    )


@app.command()
@user_errors
def checkpoint(
    store: StoreOption,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Write the log's size and head hash, for the auditor to keep outside the store."""
    text = make_checkpoint(store).to_json()
    if out is None:
        console.out(text, end="", highlight=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror}") from exc
    console.print(f"checkpoint written to {out}", highlight=False)


@app.command("import")
@user_errors
def import_(
    store: StoreOption,
    source: Annotated[Path, typer.Argument(help="A JSONL file of events (export format).")],
) -> None:
    """Append the events of a JSONL file to a store (created if missing)."""
    count = import_jsonl(store, source)
    console.print(f"imported {count} events into {store}", highlight=False)


@app.command()
@user_errors
def export(
    store: StoreOption,
    to: Annotated[Path, typer.Option("--to", help="Output file.")],
    fmt: Annotated[ExportFormat, typer.Option("--format")] = "jsonl",
) -> None:
    """Write every event, in seq order, as JSONL (importable) or Parquet."""
    count = export_store(store, fmt, to)
    console.print(f"exported {count} events to {to}", highlight=False)


@app.command()
@user_errors
def sql(
    store: StoreOption,
    query: Annotated[str, typer.Argument(help="A read-only SQL query over the views.")],
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """Run a read-only SQL query over the store's views (events, ...)."""
    con = open_store(store)
    try:
        result = con.execute(query)
        columns = [column[0] for column in result.description or []]
        rows = result.fetchall()
    except duckdb.Error as exc:
        raise StoreError(str(exc).strip().splitlines()[0]) from exc
    finally:
        con.close()
    render_rows(console, columns, rows, fmt)


@app.command()
@user_errors
def demo(
    store: Annotated[Path, typer.Option("--store", help="Where to record.")] = Path("demo-store"),
) -> None:
    """Record a scripted P3 conversation into a store, then query and verify it."""
    run_demo(store, console)


def main() -> None:
    app()
