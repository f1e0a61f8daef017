"""The p3log command line: one thin command per user task.

Commands only parse arguments, call the library and print; every user-facing
failure is a `StoreError` (a `TransactionKeyError` of `p3log show` among them),
`SettingsError`, `UsageError` or `OptionError` (the replay commands' options) that
becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from p3log.projections.export import export_parquet
from p3log.projections.listing import list_findings, list_transactions
from p3log.projections.opening import (
    make_checkpoint,
    open_store,
    rebuild_projections,
    verify_store,
)
from p3log.projections.timeline import load_timeline
from p3log.protocol.dialect import load_dialect
from p3log.render import (
    OutputFormat,
    TimelineFormat,
    render_findings,
    render_rows,
    render_timeline,
    render_transactions,
)
from p3log.replay.command import (
    OptionError,
    build_drive_config,
    build_serve_config,
    run_drive_command,
    run_serve_command,
)
from p3log.replay.diff import DiffFormat, load_diff, render_diff
from p3log.replay.divergence import OnUnexpected
from p3log.replay.drive_plan import DEFAULT_TIMEOUT, DriveOnUnexpected
from p3log.replay.normalise import VolatilePaths
from p3log.replay.recording import ReplayError
from p3log.report import Selection, build_report, write_html
from p3log.settings import SettingsError
from p3log.sim import SimConfig
from p3log.sim.run import DEFAULT_PORTS, listen_url, run_sim
from p3log.store.errors import StoreError
from p3log.store.keys import KEY_FILE_ENV
from p3log.store.readonly import select_statement
from p3log.store.transfer import ExportFormat, export_store, import_jsonl
from p3log.store.verify import Checkpoint
from p3log.tap.command import run_tap_process
from p3log.tap.durability import Durability
from p3log.tap.server import HANDSHAKE_SECONDS, UPSTREAM_CONNECT_SECONDS, TapConfig
from p3log.visible import visible

app = typer.Typer(
    help="Record, audit and replay PayProtocol (P3) payment-terminal traffic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Nothing p3log prints is Rich markup or emoji codes: store paths, queries and recorded
# values are shown as they are (tables and timelines: `p3log.render`).
console = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
errors = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)

EXIT_FAILED_CHECK = 1
EXIT_BAD_INPUT = 2

StoreOption = Annotated[Path, typer.Option("--store", help="Store directory.", show_default=False)]
DialectOption = Annotated[
    Path | None, typer.Option("--dialect", help="A dialect file (TOML); see docs/dialect.md.")
]
IgnorePathOption = Annotated[
    list[str] | None,
    typer.Option("--ignore-path", help="One more volatile JSON path (repeatable)."),
]
ComparePathOption = Annotated[
    list[str] | None,
    typer.Option("--compare-path", help="Compare a default volatile path (repeatable)."),
]


def _use_key_file(path: Path | None) -> Path | None:
    """The key file for every store this process (and what it starts) records into."""
    if path is not None:
        os.environ[KEY_FILE_ENV] = str(path)
    return path


RedactionKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--redaction-key",
        envvar=KEY_FILE_ENV,
        callback=_use_key_file,
        show_default=False,
        help="The fingerprint key file (made for a new store if missing); by default the "
        "store's key is found by its id in the key directory (docs/store.md).",
    ),
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
        except (StoreError, SettingsError, UsageError, OptionError) as exc:
            errors.print(f"p3log: {visible(str(exc))}", highlight=False, markup=False)
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
        errors.print(f"verify FAILED at {visible(str(report.problem))}")
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
    redaction_key: RedactionKeyOption = None,
) -> None:
    """Append the events of a JSONL file to a store (created if missing): all of them or,
    if the file is damaged, cut short or already imported, none."""
    count = import_jsonl(store, source)
    console.print(f"imported {count} events into {store}", highlight=False)


@app.command()
@user_errors
def export(
    store: StoreOption,
    to: Annotated[Path, typer.Option("--to", help="Output file (jsonl) or directory (parquet).")],
    fmt: Annotated[ExportFormat, typer.Option("--format")] = "jsonl",
    force: Annotated[
        bool, typer.Option("--force", help="parquet: replace an earlier export at --to.")
    ] = False,
) -> None:
    """Write every event, in seq order, as JSONL (importable); or the events and every
    projection as Parquet partitioned by day and resource, for any Parquet engine."""
    if fmt == "jsonl":
        count = export_store(store, fmt, to)
        console.print(f"exported {count} events to {to}", highlight=False)
        return
    manifest = export_parquet(store, to, replace=force)
    console.print(
        f"exported {manifest.tables['events'].rows} events and "
        f"{manifest.projection_rows} projection rows to {to} (Parquet by day and resource)",
        highlight=False,
    )


@app.command()
@user_errors
def sql(
    store: StoreOption,
    query: Annotated[str, typer.Argument(help="One SELECT over the store's views.")],
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """Run one SELECT over the store's views (events, transactions, ...); it can read
    nothing else and change nothing (see docs/store.md, "Reading")."""
    select_statement(query)
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


@contextmanager
def _reading(store: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store as of now, for one command; a failing query is one plain line."""
    con = open_store(store)
    try:
        yield con
    except duckdb.Error as exc:
        raise StoreError(str(exc).strip().splitlines()[0]) from exc
    finally:
        con.close()


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
    where, params = list[str](), list[Any]()
    if since_us is not None:
        where.append("epoch_us(t.requested_at) >= ?")
        params.append(since_us)
    if until_us is not None:
        where.append("epoch_us(t.requested_at) < ?")
        params.append(until_us)
    if outcomes:
        where.append("upper(t.outcome) IN (SELECT unnest(?))")
        params.append(outcomes)
    with _reading(store) as con:
        render_transactions(console, list_transactions(con, where, params), fmt)


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
    with _reading(store) as con:
        render_findings(console, list_findings(con, rules), fmt)


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
    with _reading(store) as con:
        ((transaction_count, finding_count),) = con.execute(
            "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM protocol_findings)"
        ).fetchall()
    console.print(
        f"rebuilt projections from {count} events in {elapsed:.2f} s: "
        f"{transaction_count} transactions, {finding_count} findings",
        highlight=False,
    )


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
    if transaction is not None and (since is not None or until is not None):
        raise UsageError("--transaction names one transaction: leave out --since and --until")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: no directory {out.parent}")
    selection = Selection(
        key=transaction,
        since_us=_bound("--since", since),
        until_us=_bound("--until", until, upper=True),
    )
    built = build_report(store, selection, checkpoint)
    write_html(built, out)
    count = len(built.transactions)
    chain = built.chain
    status = chain.label
    if chain.report is not None and chain.report.problem is not None:
        status += f" at {chain.report.problem}"
    line = (
        f"report: {count} transaction{'' if count == 1 else 's'}, chain {status}, written to {out}"
    )
    if not chain.ok:
        errors.print(line, highlight=False, markup=False)
        raise typer.Exit(EXIT_FAILED_CHECK)
    console.print(line, highlight=False, markup=False)


@app.command()
@user_errors
def demo(
    store: Annotated[Path, typer.Option("--store", help="Where to record.")] = Path("demo-store"),
    redaction_key: RedactionKeyOption = None,
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
    redaction_key: RedactionKeyOption = None,
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
    redaction_key: RedactionKeyOption = None,
    connect_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds the upstream has to accept and complete its WebSocket handshake."
        ),
    ] = UPSTREAM_CONNECT_SECONDS,
    handshake_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a POS has to complete its WebSocket handshake or send its first "
            "framed-TCP frame; no upstream is dialed before."
        ),
    ] = HANDSHAKE_SECONDS,
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
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
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


replay_app = typer.Typer(
    help="Replay a recorded session (see docs/replay.md).", no_args_is_help=True
)
app.add_typer(replay_app, name="replay")

SessionOption = Annotated[
    str,
    typer.Option(help="The recorded session: its id, or a unique prefix.", show_default=False),
]


def _announce(line: str) -> None:
    """A replay command's banner and summary, on stdout at once."""
    console.print(line, highlight=False, markup=False)
    console.file.flush()


def _complain(line: str) -> None:
    """A replay command's one-line problem, on stderr."""
    errors.print(line, highlight=False, markup=False)


@replay_app.command("serve")
@user_errors
def replay_serve(
    store: StoreOption,
    session: SessionOption,
    listen: Annotated[
        str, typer.Option(help="HOST:PORT for the POS (port 0 picks one).", show_default=False)
    ],
    speed: Annotated[
        float | None,
        typer.Option(help="Play the recorded gaps divided by this.", show_default="1.0"),
    ] = None,
    asap: Annotated[
        bool, typer.Option("--asap", help="No timed waits: send as soon as allowed.")
    ] = False,
    reactive: Annotated[
        bool, typer.Option("--reactive", help="Wait only for the POS, never for time.")
    ] = False,
    on_unexpected: Annotated[
        OnUnexpected,
        typer.Option(help="A POS message the recording cannot match: fail, skip or error."),
    ] = "fail",
    fresh_ids: Annotated[
        bool,
        typer.Option("--fresh-ids", help="Issue new transaction identifiers, consistently."),
    ] = False,
    ignore_path: IgnorePathOption = None,
    compare_path: ComparePathOption = None,
    transport: Annotated[
        Transport | None, typer.Option(help="ws or tcp; by default the recorded one.")
    ] = None,
    dialect: DialectOption = None,
    redaction_key: RedactionKeyOption = None,
) -> None:
    """Play the PayServer side of a recorded session to the POS that connects."""
    config = build_serve_config(
        store=store,
        session=session,
        listen=listen,
        speed=speed,
        asap=asap,
        reactive=reactive,
        on_unexpected=on_unexpected,
        fresh_ids=fresh_ids,
        ignore_paths=ignore_path or [],
        compare_paths=compare_path or [],
        transport=transport,
        dialect_path=dialect,
    )
    raise typer.Exit(run_serve_command(config, announce=_announce, complain=_complain))


@replay_app.command("drive")
@user_errors
def replay_drive(
    store: StoreOption,
    session: SessionOption,
    target: Annotated[
        str,
        typer.Option(help="The server: ws://HOST:PORT/ or tcp://HOST:PORT.", show_default=False),
    ],
    speed: Annotated[
        float | None,
        typer.Option(help="Play the POS's think times divided by this.", show_default="1.0"),
    ] = None,
    asap: Annotated[
        bool, typer.Option("--asap", help="No think times: send as soon as the server allows.")
    ] = False,
    secret_env: Annotated[
        str,
        typer.Option(help="Environment variable holding the merchant secret for the login."),
    ] = DEFAULT_SECRET_ENV,
    on_unexpected: Annotated[
        DriveOnUnexpected,
        typer.Option(help="A server message the recording does not have: fail or continue."),
    ] = "fail",
    timeout: Annotated[
        float,
        typer.Option(help="Seconds the server may be later than recorded before giving up."),
    ] = DEFAULT_TIMEOUT,
    ignore_path: IgnorePathOption = None,
    compare_path: ComparePathOption = None,
    dialect: DialectOption = None,
    redaction_key: RedactionKeyOption = None,
) -> None:
    """Play the POS side of a recorded session against a live server (or the simulator)."""
    config = build_drive_config(
        store=store,
        session=session,
        target=target,
        secret=os.environ.get(secret_env) if secret_env else None,
        secret_env=secret_env,
        speed=speed,
        asap=asap,
        on_unexpected=on_unexpected,
        timeout=timeout,
        ignore_paths=ignore_path or [],
        compare_paths=compare_path or [],
        dialect_path=dialect,
    )
    raise typer.Exit(run_drive_command(config, announce=_announce, complain=_complain))


@app.command("diff")
@user_errors
def diff_(
    store: StoreOption,
    session_a: Annotated[str, typer.Argument(help="Session A (id or unique prefix).")],
    session_b: Annotated[str, typer.Argument(help="Session B, compared with A.")],
    fmt: Annotated[DiffFormat, typer.Option("--format")] = DiffFormat.table,
    ignore_path: IgnorePathOption = None,
    compare_path: ComparePathOption = None,
    dialect: DialectOption = None,
) -> None:
    """Compare two sessions operation by operation; exit 1 if their messages differ."""
    loaded = load_dialect(dialect)
    try:
        volatile = (
            VolatilePaths.between_runs(loaded).adding(ignore_path or []).without(compare_path or [])
        )
        found = load_diff(store, session_a, session_b, volatile=volatile, dialect=loaded)
    except ValueError as exc:
        raise UsageError(f"--ignore-path/--compare-path: {exc}") from None
    except ReplayError as exc:
        raise UsageError(str(exc)) from None
    render_diff(console, found, fmt)
    raise typer.Exit(0 if found.identical else EXIT_FAILED_CHECK)


def main() -> None:
    app()
