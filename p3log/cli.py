"""The p3log command line: one thin command per user task.

Commands only parse arguments, call the library and print; every user-facing
failure is a `StoreError`, `SettingsError` or `UsageError` that becomes one line on stderr and a
non-zero exit.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import duckdb
import typer
from rich.console import Console

from p3log.demo import run_demo
from p3log.net.channel import Transport, parse_listen
from p3log.pos.runner import DEFAULT_SECRET_ENV, run_pos
from p3log.protocol.dialect import load_dialect
from p3log.render import OutputFormat, render_rows
from p3log.settings import SettingsError
from p3log.sim import SimConfig
from p3log.sim.run import DEFAULT_PORTS, listen_url, run_sim
from p3log.store.errors import StoreError
from p3log.store.read import open_store
from p3log.store.transfer import ExportFormat, export_store, import_jsonl
from p3log.store.verify import Checkpoint, make_checkpoint, verify_store
from p3log.tap.command import run_tap_process
from p3log.tap.durability import Durability
from p3log.tap.server import TapConfig

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
DialectOption = Annotated[
    Path | None, typer.Option("--dialect", help="A dialect file (TOML); see docs/dialect.md.")
]
P = ParamSpec("P")
R = TypeVar("R")


class UsageError(Exception):
    """An option value the user has to correct."""


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can fix into one plain line and exit code 2."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (StoreError, SettingsError, UsageError) as exc:
            errors.print(f"p3log: {exc}", highlight=False, markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return run


def _listen_address(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise UsageError(f"--listen {exc}") from None


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


@app.command()
def pos(
    url: Annotated[str, typer.Option("--url", help="ws://HOST:PORT/ or tcp://HOST:PORT.")],
    script: Annotated[Path, typer.Option("--script", help="The POS script (TOML).")],
    record: Annotated[
        Path | None, typer.Option("--record", help="Record the session into this store.")
    ] = None,
    secret_env: Annotated[
        str, typer.Option("--secret-env", help="Environment variable holding the merchant secret.")
    ] = DEFAULT_SECRET_ENV,
    dialect: DialectOption = None,
) -> None:
    """Run a scripted POS: one line per transaction; exit 1 if an expectation failed."""
    code = run_pos(
        url,
        script,
        record=record,
        secret_env=secret_env,
        dialect_path=dialect,
        out=console,
        err=errors,
    )
    raise typer.Exit(code)


@app.command()
@user_errors
def tap(
    upstream: Annotated[str, typer.Option(help="The PayServer: ws://, wss:// or tcp://HOST:PORT.")],
    store: StoreOption,
    listen: Annotated[str, typer.Option(help="HOST:PORT for POS connections.")] = "127.0.0.1:8081",
    transport: Annotated[
        Transport | None, typer.Option(help="ws or tcp; by default the upstream's scheme.")
    ] = None,
    durability: Annotated[
        Durability, typer.Option(help="journal: before forwarding; fsync: also on disk; async.")
    ] = Durability.journal,
    grace: Annotated[float, typer.Option(help="Seconds open sessions get at shutdown.")] = 5.0,
    dialect: DialectOption = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve wss:// with this cert.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The key for --tls-cert.")] = None,
    upstream_ca: Annotated[
        Path | None, typer.Option(help="CA file to verify a wss:// upstream.")
    ] = None,
) -> None:
    """Proxy POS <-> PayServer and record every message until SIGINT/SIGTERM."""
    host, port = _listen_address(listen)
    try:
        config = TapConfig(
            upstream=upstream,
            host=host,
            port=port,
            transport=transport or ("tcp" if upstream.startswith("tcp://") else "ws"),
            durability=durability,
            grace=grace,
            dialect=load_dialect(dialect),
            tls_cert=tls_cert,
            tls_key=tls_key,
            upstream_ca=upstream_ca,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    run_tap_process(config, store, lambda line: console.print(line, highlight=False))


@app.command()
@user_errors
def sim(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT to listen on (port 0 picks one); by default 127.0.0.1:8080 "
            "for ws, 127.0.0.1:4245 for tcp.",
            show_default=False,
        ),
    ] = None,
    transport: Annotated[Transport, typer.Option(help="ws (WebSocket) or tcp (framed).")] = "ws",
    devices: Annotated[
        Path | None, typer.Option(help="Devices file (TOML or JSON); see docs/sim.md.")
    ] = None,
    scenario: Annotated[
        str, typer.Option(help="A scenario name (fixtures/scenarios/NAME.toml) or a file.")
    ] = "default",
    seed: Annotated[
        int | None,
        typer.Option(help="Seed for identifiers, cards and jitter; by default a random one."),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(min=0.0, help="Multiply every delay by this (0: no delays).")
    ] = 1.0,
    dialect: DialectOption = None,
) -> None:
    """Run a simulated PayServer driven by a scenario until SIGINT/SIGTERM."""
    host, port = _listen_address(listen or f"127.0.0.1:{DEFAULT_PORTS[transport]}")
    config = SimConfig.from_files(
        scenario=scenario,
        devices=devices,
        dialect=dialect,
        seed=secrets.randbelow(2**31) if seed is None else seed,
        time_scale=time_scale,
    )

    def announce(bound: int) -> None:
        url = listen_url(transport, host, bound)
        console.print(
            f"p3log sim: listening on {url} (scenario {config.scenario.name}, seed {config.seed})",
            highlight=False,
            markup=False,
        )
        console.file.flush()

    run_sim(config, host, port, transport, announce)
    console.print("p3log sim: stopped", highlight=False)


def main() -> None:
    app()
