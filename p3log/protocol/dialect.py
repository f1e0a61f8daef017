"""Everything docs/protocol.md marks [gap], in one object.

The public P3 documentation leaves the TCP framing, the abort message names, the
action and signature body keys and the error fields open. p3log never hard-wires a
guess: the tap, simulator, client, projections and replayer all read these values
from a `Dialect`, whose defaults are docs/protocol.md's default dialect and which can be
loaded from a TOML file (see docs/dialect.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs

from p3log.settings import SettingsError, plain, read_settings_file, structure_strict

FramingName = Literal["u32be", "u32le", "u16be", "u16le", "newline"]
AbortCorrelation = Literal["session_resource", "body_tag"]

ONE_MIB = 1024 * 1024


class DialectError(SettingsError):
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
    """One P3 dialect. `Dialect()` is docs/protocol.md's default dialect."""

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
        data = read_settings_file(path, "dialect", DialectError)
        return dialect_from_dict(data, source=str(path))


def load_dialect(path: Path | None) -> Dialect:
    """The dialect in the file at `path`, or docs/protocol.md's default dialect if None."""
    return DEFAULT_DIALECT if path is None else Dialect.from_toml(path)


def dialect_from_dict(data: dict[str, Any], source: str = "dialect") -> Dialect:
    """Build a dialect from plain data, rejecting unknown keys and wrong types."""
    return structure_strict(data, Dialect, source, DialectError)


def dialect_to_dict(dialect: Dialect) -> dict[str, Any]:
    """The plain data `dialect_from_dict` builds `dialect` back from."""
    data: dict[str, Any] = plain(dialect)
    return data


DEFAULT_DIALECT = Dialect()
