"""Scenarios: what the simulated PayServer does with each transaction.

A scenario is an ordered list of rules (`[[transaction]]` tables in a TOML file under
`fixtures/scenarios/`). Each execute takes one rule:

- a rule with `match_amount` takes every execute of exactly that amount (the first
  such rule wins), so a POS script can pick an outcome by the amount it charges;
- every other execute takes the rules *without* `match_amount` in turn, cycling:
  the n-th of these executes gets rule n modulo their number. Matched executes do
  not move the cycle.

A rule says how the transaction ends (approve, or decline with a statusDetails
code), how long each phase takes (milliseconds, before `--time-scale` and jitter),
whether a signature is asked for, and whether a fault strikes at one of the states
it passes (a server error, or the connection dropped). See docs/sim.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Literal, get_args

import attrs

from p3log.settings import read_settings_file, structure_strict
from p3log.sim.errors import SimConfigError

__all__ = [
    "FAULT_STATES",
    "FaultState",
    "Rule",
    "RuleCycle",
    "Scenario",
    "load_scenario",
    "scenario_dir",
    "scenario_names",
]

Outcome = Literal["approve", "decline"]
Scheme = Literal["VISA", "MASTERCARD", "MAESTRO", "AMERICAN_EXPRESS"]
# The states an execute passes through, in order; a fault can strike at any of them.
FaultState = Literal[
    "CONNECTING_TO_ACCESSORY",
    "INITIALIZING_TRANSACTION",
    "WAITING_FOR_CARD_PRESENTATION",
    "WAITING_FOR_CARD_DATA_INPUT",
    "PROCESSING",
    "WAITING_FOR_CARD_REMOVAL",
]
FAULT_STATES: tuple[FaultState, ...] = get_args(FaultState)

_non_negative = attrs.validators.ge(0)


@attrs.frozen
class Rule:
    """What happens to one transaction. The defaults are a contactless approval."""

    match_amount: Decimal | None = None
    outcome: Outcome = "approve"
    decline_code: str = "DECLINED_INSUFFICIENT_FUNDS"
    signature: bool = False
    # Phase lengths in ms. `abortable_ms` is the abortable window: the wait in
    # WAITING_FOR_CARD_PRESENTATION, at whose end the card is presented.
    connect_ms: int = attrs.field(default=300, validator=_non_negative)
    register_ms: int = attrs.field(default=400, validator=_non_negative)
    abortable_ms: int = attrs.field(default=2500, validator=_non_negative)
    # 0 = a contactless card: no PIN entry and no card removal.
    pin_ms: int = attrs.field(default=0, validator=_non_negative)
    processor_ms: int = attrs.field(default=1200, validator=_non_negative)
    removal_ms: int = attrs.field(default=500, validator=_non_negative)
    # Every delay is multiplied by a factor drawn uniformly from [1 - jitter, 1 + jitter].
    jitter: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    server_error_at: FaultState | None = None
    server_error_type: str = "SERVER_TIMEOUT"
    drop_connection_at: FaultState | None = None
    scheme: Scheme | None = None

    def __attrs_post_init__(self) -> None:
        if self.server_error_at and self.drop_connection_at:
            raise ValueError("a rule has server_error_at or drop_connection_at, not both")
        if self.outcome == "decline" and self.signature:
            raise ValueError("signature is asked for only on approval, not with a decline")
        if not self.decline_code:
            raise ValueError("decline_code must not be empty")
        reached = self.states()
        for key in ("server_error_at", "drop_connection_at"):
            state = getattr(self, key)
            if state is not None and state not in reached:
                raise ValueError(f"{key} = {state} is never reached: this rule has pin_ms = 0")

    @property
    def chip(self) -> bool:
        """An inserted (chip and PIN) card, as opposed to a contactless one."""
        return self.pin_ms > 0

    def states(self) -> tuple[FaultState, ...]:
        """The states (of those a fault can strike at) this rule passes through, in order."""
        return tuple(
            state
            for state in FAULT_STATES
            if self.chip or state not in ("WAITING_FOR_CARD_DATA_INPUT", "WAITING_FOR_CARD_REMOVAL")
        )


def _at_least_one_rule(
    _: object, __: attrs.Attribute[tuple[Rule, ...]], rules: Sequence[Rule]
) -> None:
    if not any(rule.match_amount is None for rule in rules):
        raise ValueError("a scenario needs at least one rule without match_amount")


@attrs.frozen
class Scenario:
    """The rules in order; `Scenario()` approves every transaction (contactless)."""

    name: str = "builtin"
    description: str = ""
    rules: tuple[Rule, ...] = attrs.field(default=(Rule(),), validator=_at_least_one_rule)
    # How long the processor takes for a refund, capture or tip adjust.
    amend_ms: int = attrs.field(default=300, validator=_non_negative)


class RuleCycle:
    """Picks each execute's rule from a scenario (mutable: the position in the cycle)."""

    def __init__(self, scenario: Scenario) -> None:
        self._matched = [rule for rule in scenario.rules if rule.match_amount is not None]
        self._cycle = [rule for rule in scenario.rules if rule.match_amount is None]
        self._position = 0

    def next(self, amount: Decimal | None) -> Rule:
        for rule in self._matched:
            if amount is not None and rule.match_amount == amount:
                return rule
        rule = self._cycle[self._position % len(self._cycle)]
        self._position += 1
        return rule


@attrs.frozen
class _ScenarioFile:
    """A scenario file exactly as written; `name` defaults to the file's stem."""

    transaction: tuple[Rule, ...]
    name: str | None = None
    description: str = ""
    amend_ms: int = attrs.field(default=300, validator=_non_negative)


_NAME = re.compile(r"[A-Za-z0-9_-]+")


def scenario_dir() -> Path:
    """`fixtures/scenarios/` of the repository this package runs from."""
    return Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"


def scenario_names() -> list[str]:
    """The names `load_scenario` finds in `scenario_dir()`."""
    return sorted(path.stem for path in scenario_dir().glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by name (`fixtures/scenarios/NAME.toml`) or from a file path.

    A `str` that is a plain name (letters, digits, `-`, `_`) is looked up by name;
    anything else (a `Path`, or text with a `/` or a suffix) is a path.
    """
    if isinstance(name_or_path, str) and _NAME.fullmatch(name_or_path):
        path = scenario_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(scenario_names()) or "none"
            raise SimConfigError(f"no scenario named {name_or_path!r} (known: {known})")
    else:
        path = Path(name_or_path)
    data = read_settings_file(path, "scenario", SimConfigError)
    parsed = structure_strict(data, _ScenarioFile, str(path), SimConfigError)
    try:
        return Scenario(
            name=parsed.name or path.stem,
            description=parsed.description,
            rules=parsed.transaction,
            amend_ms=parsed.amend_ms,
        )
    except ValueError as exc:
        raise SimConfigError(f"{path}: {exc}") from exc
