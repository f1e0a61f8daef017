"""The p3log command line: one thin command per user task.

Commands only parse arguments, call the library and print; every user-facing
failure is a `StoreError` (a `TransactionKeyError` of `p3log show` among them),
`SettingsError` or `UsageError` that becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import duckdb
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from p3log.demo import run_demo
from p3log.net.channel import Transport, parse_listen
from p3log.pos.runner import DEFAULT_SECRET_ENV, run_pos
from p3log.projections import RULES
from p3log.projections.opening import open_store, rebuild_projections
from p3log.projections.timeline import load_timeline
from p3log.protocol.dialect import load_dialect
from p3log.render import (
    FINDING_COLUMNS,
    TRANSACTION_COLUMNS,
    OutputFormat,
    TimelineFormat,
    render_findings,
    render_rows,
    render_timeline,
    render_transactions,
)
from p3log.settings import SettingsError
from p3log.sim import SimConfig
from p3log.sim.run import DEFAULT_PORTS, listen_url, run_sim
from p3log.store.errors import StoreError
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


# --- projections: transactions, one transaction's timeline, findings, rebuild -------------

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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Each transaction key's neighbours in key order: what a short key must differ from.
_KEY_NEIGHBOURS_SQL = """
    SELECT transaction_key,
           lag(transaction_key) OVER (ORDER BY transaction_key) AS prev_key,
           lead(transaction_key) OVER (ORDER BY transaction_key) AS next_key
    FROM transactions
"""


def _bound(option: str, value: str | None, *, upper: bool = False) -> int | None:
    """A --since/--until value (ISO 8601 date or datetime; naive is UTC) as UTC
    microseconds: the first instant included, or with `upper` the first one excluded
    (after the datetime, or after the whole day for a date)."""
    if value is None:
        return None
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(
                f"{option} {value!r} is not an ISO 8601 date or datetime "
                "(like 2026-11-27 or 2026-11-27T14:30:00Z)"
            ) from None
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        step = timedelta(microseconds=1)
    else:
        at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        step = timedelta(days=1)
    return (at + step - _EPOCH if upper else at - _EPOCH) // timedelta(microseconds=1)


def _choices(values: Sequence[str] | None) -> list[str]:
    """A repeatable option whose values may also be comma-separated."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> list[Any]:
    try:
        return con.execute(sql, list(params)).fetchall()
    except duckdb.Error as exc:
        raise StoreError(str(exc).strip().splitlines()[0]) from exc


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
            help="Only these outcomes (APPROVED, DECLINED, ABORTED, ERROR, INCOMPLETE, ...): "
            "repeat the option or separate by commas; any case.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """List the transactions (execute and amend requests) in the order they were requested."""
    since_us = _bound("--since", since)
    until_us = _bound("--until", until, upper=True)
    outcomes = [value.upper() for value in _choices(outcome)]
    if outcome and not outcomes:
        raise UsageError("--outcome needs at least one outcome")
    where, params = ["TRUE"], list[Any]()
    if since_us is not None:
        where.append("epoch_us(t.requested_at) >= ?")
        params.append(since_us)
    if until_us is not None:
        where.append("epoch_us(t.requested_at) < ?")
        params.append(until_us)
    if outcomes:
        where.append("upper(t.outcome) IN (SELECT unnest(?))")
        params.append(outcomes)
    table = fmt is OutputFormat.table
    columns = ", ".join(f"t.{column}" for column in TRANSACTION_COLUMNS)
    sql = (
        f"SELECT {columns}"
        + (", n.prev_key, n.next_key" if table else "")
        + " FROM transactions t"
        + (f" JOIN ({_KEY_NEIGHBOURS_SQL}) n USING (transaction_key)" if table else "")
        + f" WHERE {' AND '.join(where)} ORDER BY t.requested_at, t.request_seq"
    )
    con = open_store(store)
    try:
        rows = _query(con, sql, params)
    finally:
        con.close()
    width = len(TRANSACTION_COLUMNS)
    render_transactions(
        console,
        [row[:width] for row in rows],
        fmt,
        neighbours=[row[width:] for row in rows] if table else (),
    )


@app.command()
@user_errors
def show(
    store: StoreOption,
    key: Annotated[
        str,
        typer.Argument(
            help="A transaction key, a unique prefix of one, or the server's transaction "
            "identifier.",
            show_default=False,
        ),
    ],
    fmt: Annotated[TimelineFormat, typer.Option("--format")] = TimelineFormat.table,
) -> None:
    """Show one transaction's timeline: every message with its timing, abort windows,
    action waits, aborts, findings and latencies."""
    con = open_store(store)
    try:
        timeline = load_timeline(con, key)
    except duckdb.Error as exc:
        raise StoreError(str(exc).strip().splitlines()[0]) from exc
    finally:
        con.close()
    render_timeline(console, timeline, fmt)


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
    rules = _choices(rule)
    unknown = [name for name in rules if name not in RULES]
    if unknown:
        raise UsageError(
            f"--rule: unknown rule {', '.join(unknown)}; the rules are {', '.join(RULES)}"
        )
    if rule and not rules:
        raise UsageError("--rule needs at least one rule")
    table = fmt is OutputFormat.table
    columns = ", ".join(f"f.{column}" for column in FINDING_COLUMNS)
    sql = (
        f"SELECT {columns}"
        + (", n.prev_key, n.next_key" if table else "")
        + " FROM protocol_findings f"
        + (f" LEFT JOIN ({_KEY_NEIGHBOURS_SQL}) n USING (transaction_key)" if table else "")
        + (" WHERE f.rule IN (SELECT unnest(?))" if rules else "")
        + " ORDER BY f.seq"
    )
    con = open_store(store)
    try:
        rows = _query(con, sql, [rules] if rules else [])
    finally:
        con.close()
    width = len(FINDING_COLUMNS)
    render_findings(
        console,
        [row[:width] for row in rows],
        fmt,
        neighbours=[row[width:] for row in rows] if table else (),
    )


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
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as progress:
        task = progress.add_task("rebuild", total=None)

        def advance(folded: int, total: int) -> None:
            progress.update(task, completed=folded, total=total)

        started = time.perf_counter()
        count = rebuild_projections(store, dialect=chosen, progress=advance)
        elapsed = time.perf_counter() - started
    con = open_store(store)
    try:
        counted = _query(
            con,
            "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM protocol_findings)",
            [],
        )
    finally:
        con.close()
    ((transaction_count, finding_count),) = counted
    console.print(
        f"rebuilt projections from {count} events in {elapsed:.2f} s: "
        f"{transaction_count} transactions, {finding_count} findings",
        highlight=False,
    )


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
