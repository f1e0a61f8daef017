"""`p3log demo`: the whole loop, into a fresh demo store each run (`p3log.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p3log.cli import core
from p3log.cli.core import (
    RedactionKeyOption,
    app,
    user_errors,
)
from p3log.demo import run_demo


@app.command()
@user_errors
def demo(
    store: Annotated[
        Path,
        typer.Option(
            "--store",
            metavar="DIR",
            help="Where to record; a demo store left there by an earlier run is replaced.",
        ),
    ] = Path("demo-store"),
    redaction_key: RedactionKeyOption = None,
) -> None:
    """Record a scripted P3 conversation into a fresh store, then query and verify it."""
    run_demo(store, core.console)
