"""Everything PROTOCOL.md marks [gap], in one object.

The public P3 documentation leaves the TCP framing, the abort message names, the
action and signature body keys and the error fields open. p3log never hard-wires a
guess: the tap, simulator, client, projections and replayer all read these values
from a `Dialect`, whose defaults are PROTOCOL.md's default dialect and which can be
loaded from a TOML file (see docs/dialect.md).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs

FramingName = Literal["u32be", "u32le", "u16be", "u16le", "newline"]
AbortCorrelation = Literal["session_resource", "body_tag"]

ONE_MIB = 1024 * 1024


class DialectError(ValueError):
    """A dialect file that cannot be read or does not describe a dialect."""


@attrs.frozen
class TcpRules:
    """How P3 messages are framed on a TCP stream."""

    framing: FramingName = "u32be"
    max_frame_bytes: int = attrs.field(default=ONE_MIB, validator=attrs.validators.ge(1))


@attrs.frozen
class AbortRules:
    """What the abort operation is called and which execute it aborts."""

    request_type: str = "ABORT_TRANSACTION_REQUEST"
    response_type: str = "ABORT_TRANSACTION_RESPONSE"
    # session_resource: the abort aborts the execute in flight on its resource in its
    # session. body_tag: the abort body names the execute's tag under `tag_key`.
    correlation: AbortCorrelation = "session_resource"
    tag_key: str = "transactionTag"
    not_abortable_error: str = "TRANSACTION_NO_LONGER_ABORTABLE"


@attrs.frozen
class ActionRules:
    """The body of EXECUTE_TRANSACTION_ACTION."""

    action_key: str = "action"
    signature_action: str = "SIGNATURE"


@attrs.frozen
class SignatureRules:
    """The body of SUBMIT_SIGNATURE_REQUEST."""

    signature_key: str = "signature"
    on_receipt_key: str = "signOnReceipt"


@attrs.frozen
class ErrorRules:
    """The fields of the `error` object on an error status."""

    type_key: str = "type"
    source_key: str = "source"
    message_key: str = "message"


@attrs.frozen
class Dialect:
    """One P3 dialect. `Dialect()` is PROTOCOL.md's default dialect."""

    tcp: TcpRules = TcpRules()
    abort: AbortRules = AbortRules()
    action: ActionRules = ActionRules()
    signature: SignatureRules = SignatureRules()
    error: ErrorRules = ErrorRules()
    # Accept the documentation's non-strict JSON (comments, trailing commas).
    lenient_json: bool = False

    @classmethod
    def from_toml(cls, path: Path) -> Dialect:
        """Load a dialect file; keys it leaves out keep their default values."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DialectError(f"cannot read dialect file {path}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DialectError(f"dialect file {path} is not valid TOML: {exc}") from exc
        return dialect_from_dict(data, source=str(path))


def dialect_from_dict(data: dict[str, Any], source: str = "dialect") -> Dialect:
    """Build a dialect from plain data, rejecting unknown keys and wrong types."""
    try:
        return _STRICT.structure(data, Dialect)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(_describe(exc))
        raise DialectError(f"{source}: {problems}") from exc


def _describe(exc: BaseException) -> list[str]:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return [f"unknown key(s) {sorted(exc.extra_fields)}"]
    if isinstance(exc, BaseExceptionGroup):
        found: list[str] = []
        for sub in exc.exceptions:
            found.extend(_describe(sub))
        return found
    note = getattr(exc, "__notes__", None)
    where = f" ({note[0]})" if note else ""
    return [f"{exc}{where}"]


def _structure_exact(value: Any, kind: type) -> Any:
    # TOML already yields the right Python types; coercing "3" to 3 would hide typos.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


_STRICT = cattrs.Converter(forbid_extra_keys=True)
for _kind in (str, int, bool):
    _STRICT.register_structure_hook(_kind, _structure_exact)

DEFAULT_DIALECT = Dialect()
