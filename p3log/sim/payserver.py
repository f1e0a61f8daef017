"""`PayServer`: the state every session of one simulator shares.

- which device is busy, and with which execute (one transaction per device);
- the transaction registry (identifier -> latest transaction object), so that an
  amend in any session finds a transaction made in another;
- the scenario's rule cycle and the operation counter that seeds each operation's
  RNG: operation n gets `Random(f"{seed}/{n}")`, so identifiers and delays do not
  depend on how concurrent sessions interleave their RNG draws.

Every method is synchronous: a check and the change it guards cannot be split by
another task.
"""

from __future__ import annotations

from decimal import Decimal
from random import Random

from p3log.protocol.model import Transaction
from p3log.sim.config import SimConfig
from p3log.sim.devices import SimDevice
from p3log.sim.scenario import Rule, RuleCycle

__all__ = ["PayServer"]


class PayServer:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._rules = RuleCycle(config.scenario)
        self._operations = 0
        self._busy: dict[str, object] = {}
        self._transactions: dict[str, Transaction] = {}
        self._refunded: dict[str, Decimal] = {}

    # --- devices ---

    def device(self, resource: str) -> SimDevice | None:
        return self.config.devices.device(resource)

    def holder(self, resource: str) -> object | None:
        """What runs on `resource` now, or None when it is free."""
        return self._busy.get(resource)

    def claim(self, resource: str, owner: object) -> bool:
        if resource in self._busy:
            return False
        self._busy[resource] = owner
        return True

    def release(self, resource: str, owner: object) -> None:
        if self._busy.get(resource) is owner:
            del self._busy[resource]

    # --- scenario and randomness ---

    def next_rule(self, amount: Decimal | None) -> Rule:
        return self._rules.next(amount)

    def operation_rng(self) -> Random:
        """A fresh RNG for the next operation (execute or amend)."""
        rng = Random(f"{self.config.seed}/{self._operations}")
        self._operations += 1
        return rng

    def new_identifier(self, rng: Random) -> str:
        """32 lowercase hex characters, unused so far."""
        while True:
            identifier = f"{rng.getrandbits(128):032x}"
            if identifier not in self._transactions:
                return identifier

    # --- the registry ---

    def record(self, txn: Transaction) -> None:
        if txn.identifier is not None:
            self._transactions[txn.identifier] = txn

    def lookup(self, identifier: str) -> Transaction | None:
        return self._transactions.get(identifier)

    def refunded(self, identifier: str) -> Decimal:
        return self._refunded.get(identifier, Decimal(0))

    def add_refund(self, identifier: str, amount: Decimal) -> None:
        self._refunded[identifier] = self.refunded(identifier) + amount
