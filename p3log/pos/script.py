"""The scripted POS's script file: which transactions to run and what to decide.

A script is TOML (docs/client.md has the whole format):

    currency = "EUR"                 # default for every transaction
    timeout = 30.0                   # seconds one transaction may take

    [login]
    merchant_identifier = "demo-merchant"
    provider_mode = "MOCK"           # the secret comes from the environment, never the file

    [device]                         # optional: default is the first device
    name = "Counter reader"          # or identifier = "...", or resource = "..."

    [[transaction]]
    amount = 12.50
    sign = "png"
    expect = "APPROVED"

    [[transaction]]
    refund_previous = true
    expect = "APPROVED"

Loading is strict, like dialect files: an unknown key, a value of the wrong type or
a contradictory decision is refused with one line naming the file, the entry and
the key. Nothing is coerced: `amount = "12"` is an error (write `12` or `12.0`).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

import attrs

from p3log.settings import SettingsError, read_settings_file

__all__ = [
    "EXPECTABLE_OUTCOMES",
    "AmendKind",
    "DeviceChoice",
    "LoginSettings",
    "Script",
    "ScriptError",
    "SignMode",
    "Step",
    "load_script",
    "script_from_dict",
]

SignMode = Literal["png", "on_receipt"]
AmendKind = Literal["REFUND", "CAPTURE", "TIP_ADJUST"]

#: Transaction statuses (docs/protocol.md §4) and the runner's own outcomes.
EXPECTABLE_OUTCOMES = (
    "APPROVED",
    "DECLINED",
    "ABORTED",
    "ERROR",
    "ACCEPTED",
    "PENDING",
    "INCONCLUSIVE",
    "CONNECTION_LOST",
    "TIMEOUT",
)
_PROVIDER_MODES = ("MOCK", "JUNGLE", "TEST", "TEST_FIXED", "LIVE", "LIVE_FIXED")
_AMEND_KEYS: dict[str, AmendKind] = {
    "refund_previous": "REFUND",
    "capture_previous": "CAPTURE",
    "tip_adjust_previous": "TIP_ADJUST",
}


class ScriptError(SettingsError):
    """A script file that cannot be read or does not describe a run (one line)."""


@attrs.frozen
class LoginSettings:
    merchant_identifier: str
    provider_mode: str = "MOCK"


@attrs.frozen
class DeviceChoice:
    """Which device of the login response to use; all None means the first one."""

    name: str | None = None
    identifier: str | None = None
    resource: str | None = None

    def describe(self) -> str:
        for key in ("resource", "identifier", "name"):
            value = getattr(self, key)
            if value is not None:
                return f"{key} {value!r}"
        return "the first device"


@attrs.frozen
class Step:
    """One transaction of the run, after `repeat` was expanded.

    Exactly one operation: an execute (`amend is None`) or an amend of the
    previous execute's transaction. Decisions only apply to executes.
    """

    entry: int  # 1-based index of the [[transaction]] table it came from
    amount: Decimal | None
    currency: str
    type: str = "CHARGE"
    auto_capture: bool = True
    subject: str | None = None
    custom_identifier: str | None = None
    tip_adjustable: bool = False
    amend: AmendKind | None = None
    abort_after_updates: int | None = None
    force_abort: bool = False
    sign: SignMode | None = None
    abort_during_action: bool = False
    expect: str | None = None
    expect_error: str | None = None
    # Run by a second POS on the same device once this execute's decision is due.
    meanwhile: Step | None = None
    is_meanwhile: bool = False

    @property
    def decision(self) -> str:
        """A short name of what the POS does, for the report line."""
        if self.amend is not None:
            return f"{self.amend.lower()}_previous"
        parts = []
        if self.sign is not None:
            parts.append(f"sign={self.sign}")
        if self.abort_during_action:
            parts.append("abort_during_action")
        if self.abort_after_updates is not None:
            forced = "force_" if self.force_abort else ""
            parts.append(f"{forced}abort_after={self.abort_after_updates}")
        if self.meanwhile is not None:
            parts.append("meanwhile")
        text = ",".join(parts) or "approve"
        return f"meanwhile:{text}" if self.is_meanwhile else text


@attrs.frozen
class Script:
    login: LoginSettings
    device: DeviceChoice
    steps: tuple[Step, ...]
    timeout: float = 30.0
    source: str = "script"


def load_script(path: Path) -> Script:
    """Read and check a script file; raises `ScriptError`."""
    return script_from_dict(read_settings_file(path, "script", ScriptError), source=str(path))


def script_from_dict(data: dict[str, Any], source: str = "script") -> Script:
    """Build a script from plain (TOML-decoded) data; raises `ScriptError`."""
    top = _Table(data, source).known("currency", "timeout", "login", "device", "transaction")
    currency = top.take_str("currency", default="EUR")
    timeout = top.take_number("timeout", default=30.0)
    if timeout <= 0:
        top.fail("timeout", "must be positive")
    login_table = top.take_table("login")
    if login_table is None:
        top.fail("login", "is missing (a [login] table with merchant_identifier)")
    login_table.known("merchant_identifier", "provider_mode")
    login = LoginSettings(
        merchant_identifier=login_table.require_str("merchant_identifier"),
        provider_mode=login_table.take_str("provider_mode", "MOCK", choices=_PROVIDER_MODES),
    )
    login_table.finish()
    device_table = top.take_table("device")
    device = DeviceChoice()
    if device_table is not None:
        device_table.known("name", "identifier", "resource")
        device = DeviceChoice(
            name=device_table.take_str("name"),
            identifier=device_table.take_str("identifier"),
            resource=device_table.take_str("resource"),
        )
        if sum(value is not None for value in attrs.astuple(device)) > 1:
            device_table.fail(None, "give one of name, identifier or resource")
        device_table.finish()
    entries = top.take_tables("transaction")
    if not entries:
        top.fail("transaction", "is missing (at least one [[transaction]] table)")
    top.finish()
    steps: list[Step] = []
    for number, table in enumerate(entries, start=1):
        step, repeat = _read_step(table, number, currency, nested=False)
        steps.extend([step] * repeat)
    return Script(login, device, tuple(steps), float(timeout), source)


_STEP_KEYS = (
    "amount",
    "currency",
    "type",
    "auto_capture",
    "subject",
    "custom_identifier",
    "tip_adjustable",
    *_AMEND_KEYS,
    "abort_after_updates",
    "force_abort",
    "sign",
    "abort_during_action",
    "expect",
    "expect_error",
)


def _read_step(table: _Table, number: int, currency: str, nested: bool) -> tuple[Step, int]:
    table.known(*(_STEP_KEYS if nested else (*_STEP_KEYS, "repeat", "meanwhile")))
    meanwhile_table = None if nested else table.take_table("meanwhile")
    amends = [kind for key, kind in _AMEND_KEYS.items() if table.take_bool(key, default=False)]
    if len(amends) > 1:
        table.fail(None, "give at most one of " + ", ".join(_AMEND_KEYS))
    amend = amends[0] if amends else None
    amount = table.take_amount("amount")
    step = Step(
        entry=number,
        amount=amount,
        currency=table.take_str("currency", default=currency),
        type=table.take_str("type", default="CHARGE"),
        auto_capture=table.take_bool("auto_capture", default=True),
        subject=table.take_str("subject"),
        custom_identifier=table.take_str("custom_identifier"),
        tip_adjustable=table.take_bool("tip_adjustable", default=False),
        amend=amend,
        abort_after_updates=table.take_int("abort_after_updates", minimum=0),
        force_abort=table.take_bool("force_abort", default=False),
        sign=cast(SignMode | None, table.take_str("sign", choices=("png", "on_receipt"))),
        abort_during_action=table.take_bool("abort_during_action", default=False),
        expect=table.take_str("expect", choices=EXPECTABLE_OUTCOMES),
        expect_error=table.take_str("expect_error"),
    )
    repeat = (None if nested else table.take_int("repeat", minimum=1)) or 1
    decisions = (
        "abort_after_updates",
        "sign",
        "abort_during_action",
        "type",
        "auto_capture",
        "tip_adjustable",
        "meanwhile",
    )
    if amend is not None:
        used = [key for key in decisions if key in table.seen]
        if used:
            table.fail(None, f"an amend takes no {', '.join(used)}")
        if amend == "TIP_ADJUST" and amount is None:
            table.fail("amount", "is required for tip_adjust_previous (the tip)")
    elif amount is None:
        table.fail("amount", "is missing")
    if step.sign is not None and step.abort_during_action:
        table.fail(None, "sign and abort_during_action both answer the action: give one")
    if step.force_abort and step.abort_after_updates is None:
        table.fail("force_abort", "needs abort_after_updates")
    if step.expect_error is not None and step.expect not in (None, "ERROR"):
        table.fail("expect_error", 'goes with expect = "ERROR"')
    if step.expect_error is not None:
        step = attrs.evolve(step, expect="ERROR")
    if meanwhile_table is not None:
        if step.abort_after_updates is None and step.sign is None and not step.abort_during_action:
            table.fail("meanwhile", "needs a decision to run at (sign, abort_*)")
        other, _ = _read_step(meanwhile_table, number, step.currency, nested=True)
        if other.amend is not None:
            meanwhile_table.fail(None, "must be an execute, not an amend")
        step = attrs.evolve(step, meanwhile=attrs.evolve(other, is_meanwhile=True))
    table.finish()
    return step, repeat


class _Table:
    """One TOML table being read: `known()` first, then typed takes, then `finish()`."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self._data = dict(data)
        self.where = where
        self.seen: set[str] = set()

    def known(self, *keys: str) -> _Table:
        """Refuse unknown keys before anything else (a typo should not read as missing)."""
        unknown = set(self._data) - set(keys)
        if unknown:
            self.fail(None, f"has unknown key(s) {sorted(unknown)}")
        return self

    def fail(self, key: str | None, problem: str) -> NoReturn:
        place = f"{self.where}: {key}" if key else self.where
        raise ScriptError(f"{place} {problem}")

    def _take(self, key: str) -> Any:
        if key in self._data:
            self.seen.add(key)
        return self._data.pop(key, None)

    def take_str(
        self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None
    ) -> Any:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {_kind(value)} {value!r}")
        if choices is not None and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def require_str(self, key: str) -> str:
        value = self.take_str(key)
        if value is None:
            self.fail(key, "is missing")
        return cast(str, value)

    def take_bool(self, key: str, default: bool) -> bool:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {_kind(value)} {value!r}")
        return value

    def take_int(self, key: str, minimum: int) -> int | None:
        value = self._take(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"must be an integer, not {_kind(value)} {value!r}")
        if value < minimum:
            self.fail(key, f"must be at least {minimum}; got {value}")
        return value

    def take_number(self, key: str, default: float) -> float:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(key, f"must be a number, not {_kind(value)} {value!r}")
        return float(value)

    def take_amount(self, key: str) -> Decimal | None:
        value = self._take(key)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(key, f"must be a number, not {_kind(value)} {value!r}")
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if not amount.is_finite() or amount < 0:
            self.fail(key, f"must be a finite amount of at least 0; got {value!r}")
        return amount

    def take_table(self, key: str) -> _Table | None:
        value = self._take(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, f"must be a table ([{key}]), not {_kind(value)}")
        return _Table(value, f"{self.where}: [{key}]")

    def take_tables(self, key: str) -> list[_Table]:
        value = self._take(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail(key, f"must be an array of tables ([[{key}]])")
        return [
            _Table(item, f"{self.where}: {key}[{number}]")
            for number, item in enumerate(value, start=1)
        ]

    def finish(self) -> None:
        if self._data:
            self.fail(None, f"has unknown key(s) {sorted(self._data)}")


def _kind(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
