"""Settings files (dialects, scenarios, devices), read strictly into attrs classes.

A settings file is never coerced or half-read: an unknown key, a value of the wrong
type or out of range is refused with one line that names where it is, e.g.
`fixtures/scenarios/x.toml: transaction[2].pin_ms: expected int, got str '3'`.
Each kind of file raises its own `SettingsError` subclass (`DialectError`,
`SimConfigError`), so callers can tell them apart.

A file is TOML unless its name ends in `.json`.
"""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import cattrs

__all__ = ["OptionError", "SettingsError", "plain", "read_settings_file", "structure_strict"]

T = TypeVar("T")


class SettingsError(ValueError):
    """A settings file or value that cannot be used; one line."""


class OptionError(SettingsError):
    """A command-line option value the user has to correct; one line, naming the option.
    The one error class for bad options: every command turns it into exit code 2."""


def read_settings_file(
    path: Path, what: str, error: type[SettingsError] = SettingsError
) -> dict[str, Any]:
    """The top-level table of a TOML (or `.json`) file; `what` names it in errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{what} file {path} is not UTF-8 text") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{what} file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise error(f"{what} file {path} must hold a JSON object")
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} file {path} is not valid TOML: {exc}") from exc


def plain(settings: object) -> Any:
    """`settings` as the plain data `structure_strict` reads back (one converter both ways)."""
    return _STRICT.unstructure(settings)


def structure_strict(
    data: Any, cls: type[T], source: str, error: type[SettingsError] = SettingsError
) -> T:
    """`cls` built from plain data, or an `error` naming every problem."""
    try:
        return _STRICT.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path="$", format_exception=_format)
        raise error(f"{source}: {'; '.join(map(_where_first, problems))}") from exc
    except (TypeError, ValueError) as exc:  # a whole-object check (validator, post-init)
        raise error(f"{source}: {exc}") from exc


def _where_first(problem: str) -> str:
    """cattrs writes `message @ $.a[0].b`; we write `a[0].b: message`."""
    message, _, path = problem.rpartition(" @ ")
    path = path.removeprefix("$").removeprefix(".")
    return f"{path}: {message}" if path else message


def _format(exc: BaseException, expected: Any) -> str:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s) {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, TypeError | ValueError) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, expected)


def _exact(value: Any, kind: type) -> Any:
    # TOML and JSON already give the right Python types; coercing "3" to 3 hides typos.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _number(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def _decimal(value: Any, _: Any) -> Decimal:
    # "12.50" (exact) or a TOML/JSON number; a float is read as its shortest text.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"expected an amount, got {type(value).__name__} {value!r}")
    try:
        amount = Decimal(value if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise ValueError(f"expected an amount, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"expected an amount, got {value!r}")
    return amount


def _is_literal(kind: Any) -> bool:
    return get_origin(kind) is Literal


def _literal(value: Any, kind: Any) -> Any:
    choices = get_args(kind)
    if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
        raise ValueError(f"expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value


_STRICT = cattrs.Converter(forbid_extra_keys=True)
for _kind in (str, int, bool):
    _STRICT.register_structure_hook(_kind, _exact)
_STRICT.register_structure_hook(float, _number)
_STRICT.register_structure_hook(Decimal, _decimal)
_STRICT.register_structure_hook_func(_is_literal, _literal)
