"""The live commands: `tap` (record POS <-> PayServer), `sim` (a simulated PayServer) and
`pos` (a scripted POS)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from p3log.cli import core
from p3log.cli.core import (
    DialectOption,
    RedactionKeyOption,
    StoreOption,
    app,
    listen_address,
    one_of,
    say,
    user_errors,
)
from p3log.net.channel import Transport
from p3log.pos.runner import DEFAULT_SECRET_ENV, run_pos
from p3log.protocol.dialect import load_dialect
from p3log.settings import OptionError
from p3log.sim import SimConfig
from p3log.sim.run import DEFAULT_PORTS, listen_url, run_sim
from p3log.tap.command import run_tap_process
from p3log.tap.durability import Durability
from p3log.tap.server import HANDSHAKE_SECONDS, UPSTREAM_CONNECT_SECONDS, TapConfig

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="URL",
        help="The server to connect to (required): ws://HOST:PORT/, wss://… or tcp://HOST:PORT.",
        show_default=False,
    ),
]


@app.command()
@user_errors
def pos(
    url: UrlOption = None,
    script: Annotated[
        Path | None,
        typer.Option("--script", metavar="FILE", help="The POS script (TOML).", show_default=False),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option("--store", metavar="DIR", help="Record the session into this store."),
    ] = None,
    secret_env: Annotated[
        str,
        typer.Option(
            "--secret-env", metavar="NAME", help="Environment variable holding the merchant secret."
        ),
    ] = DEFAULT_SECRET_ENV,
    dialect: DialectOption = None,
    redaction_key: RedactionKeyOption = None,
    record: Annotated[Path | None, typer.Option("--record", hidden=True)] = None,
) -> None:
    """Run a scripted POS: one line per transaction; exit 1 if an expectation failed."""
    code = run_pos(
        one_of("--url", url, {}),
        one_of("--script", script, {}),
        record=one_of("--store", store, {"--record": record}, required=False),
        secret_env=secret_env,
        dialect_path=dialect,
        out=core.console,
        err=core.errors,
    )
    raise typer.Exit(code)


@app.command()
@user_errors
def tap(
    store: StoreOption,
    url: UrlOption = None,
    listen: Annotated[
        str, typer.Option(metavar="HOST:PORT", help="Where the POS connects.")
    ] = "127.0.0.1:8081",
    transport: Annotated[
        Transport | None, typer.Option(help="ws or tcp; by default the --url's scheme.")
    ] = None,
    durability: Annotated[
        Durability, typer.Option(help="journal: before forwarding; fsync: also on disk; async.")
    ] = Durability.journal,
    grace: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds open sessions get at shutdown.")
    ] = 5.0,
    dialect: DialectOption = None,
    tls_cert: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Serve wss:// with this certificate.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(metavar="FILE", help="The key for --tls-cert.")
    ] = None,
    upstream_ca: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="CA file to verify a wss:// --url."),
    ] = None,
    redaction_key: RedactionKeyOption = None,
    connect_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds the server at --url has to accept and complete its WebSocket handshake.",
        ),
    ] = UPSTREAM_CONNECT_SECONDS,
    handshake_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds a POS has to complete its WebSocket handshake or send its first "
            "framed-TCP frame; no upstream is dialed before.",
        ),
    ] = HANDSHAKE_SECONDS,
    upstream: Annotated[str | None, typer.Option("--upstream", hidden=True)] = None,
) -> None:
    """Proxy POS <-> PayServer and record every message until SIGINT/SIGTERM."""
    server: str = one_of("--url", url, {"--upstream": upstream})
    host, port = listen_address(listen)
    try:
        config = TapConfig(
            upstream=server,
            host=host,
            port=port,
            transport=transport or ("tcp" if server.startswith("tcp://") else "ws"),
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
        raise OptionError(str(exc)) from None
    run_tap_process(config, store, say, dialect)


@app.command()
@user_errors
def sim(
    listen: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Where to listen (port 0 picks one); by default 127.0.0.1:8080 "
            "for ws, 127.0.0.1:4245 for tcp.",
            show_default=False,
        ),
    ] = None,
    transport: Annotated[Transport, typer.Option(help="ws (WebSocket) or tcp (framed).")] = "ws",
    devices: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Devices file (TOML or JSON); see docs/sim.md."),
    ] = None,
    scenario: Annotated[
        str,
        typer.Option(
            metavar="NAME", help="A scenario name (fixtures/scenarios/NAME.toml) or a file."
        ),
    ] = "default",
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Seed for identifiers, cards and jitter; by default a random one."
        ),
    ] = None,
    time_scale: Annotated[
        float,
        typer.Option(
            min=0.0, metavar="FACTOR", help="Multiply every delay by this (0: no delays)."
        ),
    ] = 1.0,
    dialect: DialectOption = None,
) -> None:
    """Run a simulated PayServer driven by a scenario until SIGINT/SIGTERM."""
    host, port = listen_address(listen or f"127.0.0.1:{DEFAULT_PORTS[transport]}")
    config = SimConfig.from_files(
        scenario=scenario,
        devices=devices,
        dialect=dialect,
        seed=secrets.randbelow(2**31) if seed is None else seed,
        time_scale=time_scale,
    )

    def announce(bound: int) -> None:
        url = listen_url(transport, host, bound)
        say(f"p3log sim: listening on {url} (scenario {config.scenario.name}, seed {config.seed})")

    run_sim(config, host, port, transport, announce)
    say("p3log sim: stopped")
