"""The typer app every command registers on, its error handling and shared options.

Commands only parse arguments, call the library and print. Every failure a user can
fix is a `StoreError` (a `TransactionKeyError` of `p3log show` among them) or a
`SettingsError` (an `OptionError` for a bad option value among them): one line on
stderr and exit code 2 (`user_errors`).

Conventions every command follows (docs/architecture.md, "Conventions"): `--store DIR`
is the store read or recorded into, `--out PATH` what a command writes, `--url URL`
the server it connects to, `--listen HOST:PORT` where it listens, and the thing a
command acts on (a transaction key, a session) is positional. Older spellings
(`--to`, `--upstream`, `--target`, `--record`, `--session`) still work, hidden.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import duckdb
import typer
import typer.core
from rich.console import Console

from p3log.net.channel import parse_listen
from p3log.projections.opening import open_store
from p3log.settings import OptionError, SettingsError
from p3log.store.errors import EXIT_BAD_INPUT, StoreError
from p3log.store.keys import KEY_FILE_ENV
from p3log.visible import visible

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED_CHECK",
    "ComparePathOption",
    "DialectOption",
    "IgnorePathOption",
    "RedactionKeyOption",
    "StoreOption",
    "app",
    "complain",
    "console",
    "errors",
    "listen_address",
    "main",
    "one_of",
    "reading",
    "say",
    "user_errors",
]

EXIT_FAILED_CHECK = 1


def _flag_has_no_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so its help shows none (typer writes `<bool>`)."""
    if self.is_flag:
        return None
    return _typer_display_type(self, ctx)


def _argument_is_its_name(self: typer.core.TyperArgument, ctx: Any) -> str | None:
    """An argument's help row names it already (KEY, SESSION): no `<str>` after it."""
    return None


_typer_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_has_no_type  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _argument_is_its_name  # type: ignore[method-assign,assignment]


def _version(value: bool) -> None:
    if value:
        try:
            number = version("p3log")
        except PackageNotFoundError:  # run from a tree that was never installed
            number = "unknown"
        print(f"p3log {number}")
        raise typer.Exit()


app = typer.Typer(
    help="Record, audit and replay PayProtocol (P3) payment-terminal traffic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print p3log's version and exit."
        ),
    ] = False,
) -> None:
    """Record, audit and replay PayProtocol (P3) payment-terminal traffic."""


# Nothing p3log prints is Rich markup or emoji codes: store paths, queries and recorded
# values are shown as they are (tables and timelines: `p3log.render`).
console = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
errors = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can fix into one plain line and exit code 2."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (StoreError, SettingsError) as exc:
            errors.print(f"p3log: {visible(str(exc))}", highlight=False, markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return run


def say(line: str) -> None:
    """One line of a command's own on stdout, at once (a banner a test or script waits on)."""
    console.print(line, highlight=False, markup=False)
    console.file.flush()


def complain(line: str) -> None:
    """One line of a command's problem on stderr."""
    errors.print(line, highlight=False, markup=False)


@contextmanager
def reading(store: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store as of now, for one command; a failing query is one plain line."""
    con = open_store(store)
    try:
        yield con
    except duckdb.Error as exc:
        raise StoreError(str(exc).strip().splitlines()[0]) from exc
    finally:
        con.close()


def listen_address(text: str, option: str = "--listen") -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise OptionError(f"{option} {exc}") from None


def one_of(option: str, value: Any, aliases: dict[str, Any], *, required: bool = True) -> Any:
    """The value of `option`, or of the one hidden old spelling of it that was given."""
    given = {name: old for name, old in aliases.items() if old is not None}
    if value is not None and given:
        raise OptionError(f"{option} and {', '.join(given)} are one option: give it once")
    if value is None and len(given) > 1:
        raise OptionError(f"{' and '.join(given)} are one option ({option}): give it once")
    if value is None and given:
        value = next(iter(given.values()))
    if value is None and required:
        raise OptionError(f"missing {'option ' if option.startswith('-') else ''}{option}")
    return value


StoreOption = Annotated[
    Path, typer.Option("--store", metavar="DIR", help="The store directory.", show_default=False)
]
DialectOption = Annotated[
    Path | None,
    typer.Option("--dialect", metavar="FILE", help="A dialect file (TOML); see docs/dialect.md."),
]
IgnorePathOption = Annotated[
    list[str] | None,
    typer.Option("--ignore-path", metavar="PATH", help="One more volatile JSON path (repeatable)."),
]
ComparePathOption = Annotated[
    list[str] | None,
    typer.Option(
        "--compare-path", metavar="PATH", help="Compare a default volatile path (repeatable)."
    ),
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
        metavar="FILE",
        envvar=KEY_FILE_ENV,
        callback=_use_key_file,
        show_default=False,
        help="The fingerprint key file (made for a new store if missing); by default the "
        "store's key is found by its id in the key directory (docs/store.md).",
    ),
]


def main() -> None:
    app()
