"""`SimConfig`: everything one simulator run is set up with."""

from __future__ import annotations

from pathlib import Path

import attrs

from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect, load_dialect
from p3log.sim.devices import DevicesConfig, load_devices
from p3log.sim.scenario import Scenario, load_scenario

__all__ = ["SimConfig"]


@attrs.frozen
class SimConfig:
    """How a simulated PayServer behaves.

    `SimConfig()` offers the two default readers to any merchant and approves every
    transaction (`Scenario()`); `time_scale` multiplies every delay (0: no delays,
    for tests and benchmarks). The same `seed` and the same requests give the same
    identifiers, cards, delays and update sequences.
    """

    scenario: Scenario = attrs.field(factory=Scenario)
    devices: DevicesConfig = attrs.field(factory=DevicesConfig)
    seed: int = 0
    time_scale: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    dialect: Dialect = DEFAULT_DIALECT

    @classmethod
    def from_files(
        cls,
        *,
        scenario: str | Path = "default",
        devices: Path | None = None,
        dialect: Path | None = None,
        seed: int = 0,
        time_scale: float = 1.0,
    ) -> SimConfig:
        """Load the scenario (a name or a path), devices file and dialect file.

        Raises `SimConfigError` (scenario, devices) or `DialectError`, one line each.
        """
        return cls(
            scenario=load_scenario(scenario),
            devices=load_devices(devices) if devices else DevicesConfig(),
            seed=seed,
            time_scale=time_scale,
            dialect=load_dialect(dialect),
        )

    @property
    def merchant_name(self) -> str:
        """What receipts print as the merchant."""
        return self.devices.merchant_identifier or "p3log simulator"
