"""Replaying recorded sessions: `replay serve`, `replay drive`, and `diff` of two sessions."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from p3log.cli import core
from p3log.cli.core import (
    EXIT_FAILED_CHECK,
    ComparePathOption,
    DialectOption,
    IgnorePathOption,
    RedactionKeyOption,
    StoreOption,
    app,
    complain,
    one_of,
    say,
    user_errors,
)
from p3log.net.channel import Transport
from p3log.pos.runner import DEFAULT_SECRET_ENV
from p3log.protocol.dialect import load_dialect
from p3log.replay.command import (
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
from p3log.settings import OptionError

replay_app = typer.Typer(
    help="Replay recorded sessions, whole incidents too (see docs/replay.md).",
    no_args_is_help=True,
)
app.add_typer(replay_app, name="replay")

SessionArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="SESSION",
        help="The recorded session: its id, or a unique prefix (or --sessions, --since/--until).",
        show_default=False,
    ),
]
OldSessionOption = Annotated[str | None, typer.Option("--session", hidden=True)]
SessionsOption = Annotated[
    str | None,
    typer.Option(
        "--sessions",
        metavar="ID,ID…",
        help="Several recorded connections (an incident), replayed together.",
        show_default=False,
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Every connection opened at or after: ISO 8601 date or datetime (no zone: UTC).",
        show_default=False,
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="WHEN",
        help="Every connection opened at or before: ISO 8601 datetime, or a date (to its end).",
        show_default=False,
    ),
]


def _show_progress(line: str | None) -> None:
    """The drive's live progress line, rewritten in place on a terminal's stderr."""
    sys.stderr.write("\n" if line is None else f"\r\x1b[K{line}")
    sys.stderr.flush()


JunitOption = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        metavar="FILE",
        help="Write a JUnit XML report of the run here (one test case per connection).",
        show_default=False,
    ),
]


def _speed(what: str) -> Any:
    return typer.Option(
        metavar="FACTOR", help=f"Play {what} divided by this (by default 1).", show_default=False
    )


@replay_app.command("serve")
@user_errors
def replay_serve(
    store: StoreOption,
    session: SessionArgument = None,
    listen: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Where the POS connects (required; port 0 picks one).",
            show_default=False,
        ),
    ] = None,
    speed: Annotated[float | None, _speed("the recorded gaps")] = None,
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
    junit: JunitOption = None,
    old_session: OldSessionOption = None,
    sessions: SessionsOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Play the PayServer side of recorded connections to the POS connections that come."""
    config = build_serve_config(
        store=store,
        session=one_of("SESSION", session, {"--session": old_session}, required=False),
        sessions=sessions,
        since=since,
        until=until,
        listen=one_of("--listen", listen, {}),
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
    raise typer.Exit(run_serve_command(config, announce=say, complain=complain, junit=junit))


@replay_app.command("drive")
@user_errors
def replay_drive(
    store: StoreOption,
    session: SessionArgument = None,
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The server to drive (required): ws://HOST:PORT/, wss://… or tcp://HOST:PORT.",
            show_default=False,
        ),
    ] = None,
    speed: Annotated[float | None, _speed("the POS's recorded think times")] = None,
    asap: Annotated[
        bool, typer.Option("--asap", help="No think times: send as soon as the server allows.")
    ] = False,
    secret_env: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="Environment variable holding the merchant secret for the login.",
        ),
    ] = DEFAULT_SECRET_ENV,
    on_unexpected: Annotated[
        DriveOnUnexpected,
        typer.Option(help="A server message the recording does not have: fail or continue."),
    ] = "fail",
    timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds the server may be later than recorded before giving up.",
        ),
    ] = DEFAULT_TIMEOUT,
    ignore_path: IgnorePathOption = None,
    compare_path: ComparePathOption = None,
    dialect: DialectOption = None,
    redaction_key: RedactionKeyOption = None,
    junit: JunitOption = None,
    old_session: OldSessionOption = None,
    target: Annotated[str | None, typer.Option("--target", hidden=True)] = None,
    sessions: SessionsOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Play the POS side of recorded connections against a live server (or the simulator)."""
    config = build_drive_config(
        store=store,
        session=one_of("SESSION", session, {"--session": old_session}, required=False),
        sessions=sessions,
        since=since,
        until=until,
        target=one_of("--url", url, {"--target": target}),
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
    # A live line only on a terminal: elsewhere (CI logs, scripts) stderr carries
    # nothing but the one-line verdicts, and the summary says it all at the end.
    progress = _show_progress if sys.stderr.isatty() else None
    raise typer.Exit(
        run_drive_command(config, announce=say, complain=complain, junit=junit, progress=progress)
    )


@app.command("diff")
@user_errors
def diff_(
    store: StoreOption,
    session_a: Annotated[
        str, typer.Argument(metavar="SESSION_A", help="Session A (id or unique prefix).")
    ],
    session_b: Annotated[
        str, typer.Argument(metavar="SESSION_B", help="Session B, compared with A.")
    ],
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
        raise OptionError(f"--ignore-path/--compare-path: {exc}") from None
    except ReplayError as exc:
        raise OptionError(str(exc)) from None
    render_diff(core.console, found, fmt)
    raise typer.Exit(0 if found.identical else EXIT_FAILED_CHECK)
