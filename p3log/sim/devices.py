"""The readers the simulated PayServer offers, and the merchant it accepts.

`DevicesConfig()` is two mock readers (`devices/usbReader` on USB and
`devices/wifiReader` on WIFI) and any merchant. A devices file (TOML, or JSON when
its name ends in `.json`) replaces them::

    merchant_identifier = "shop-42"      # optional: refuse other merchants
    merchant_secret = "s3cret"           # optional: refuse other secrets
    information = { location = "3rd Room" }

    [[devices]]
    identifier = "counter1"              # resource defaults to "devices/counter1"
    name = "Counter 1"                   # defaults to the identifier
    type = "MIURA"                       # MOCK | MIURA | VERIFONE (default MOCK)
    comlink = "BLUETOOTH"                # MOCK | WIFI | USB | BLUETOOTH (default MOCK)
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import attrs

from p3log.protocol.model import Device
from p3log.settings import read_settings_file, structure_strict
from p3log.sim.errors import SimConfigError

__all__ = ["DEFAULT_DEVICES", "DevicesConfig", "SimDevice", "load_devices"]

DeviceType = Literal["MOCK", "MIURA", "VERIFONE"]
Comlink = Literal["MOCK", "WIFI", "USB", "BLUETOOTH"]


def _not_empty(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen
class SimDevice:
    """One reader, as the login response lists it."""

    identifier: str = attrs.field(validator=_not_empty)
    name: str = attrs.field(
        default=attrs.Factory(lambda self: self.identifier, takes_self=True),
        validator=_not_empty,
    )
    resource: str = attrs.field(
        default=attrs.Factory(lambda self: f"devices/{self.identifier}", takes_self=True),
        validator=_not_empty,
    )
    type: DeviceType = "MOCK"
    comlink: Comlink = "MOCK"

    def to_wire(self) -> Device:
        return Device(
            name=self.name,
            identifier=self.identifier,
            resource=self.resource,
            type=self.type,
            comlink=self.comlink,
        )


DEFAULT_DEVICES = (
    SimDevice(identifier="usbReader", name="USB reader", comlink="USB"),
    SimDevice(identifier="wifiReader", name="WiFi reader", comlink="WIFI"),
)


def _unique_resources(
    _: object, __: attrs.Attribute[tuple[SimDevice, ...]], devices: Sequence[SimDevice]
) -> None:
    if not devices:
        raise ValueError("devices: at least one device is needed")
    resources = [device.resource for device in devices]
    if len(set(resources)) != len(resources):
        raise ValueError("devices: two devices have the same resource")


@attrs.frozen
class DevicesConfig:
    """The readers and the merchant credentials (None: anything is accepted)."""

    devices: tuple[SimDevice, ...] = attrs.field(
        default=DEFAULT_DEVICES, validator=_unique_resources
    )
    merchant_identifier: str | None = None
    merchant_secret: str | None = attrs.field(default=None, repr=False)
    information: dict[str, str] = attrs.field(factory=lambda: {"location": "p3log simulator"})

    def device(self, resource: str) -> SimDevice | None:
        for device in self.devices:
            if device.resource == resource:
                return device
        return None

    def accepts(self, merchant_identifier: str, merchant_secret: str) -> bool:
        """True when the credentials match what is configured (compared in constant time)."""
        return _matches(self.merchant_identifier, merchant_identifier) and _matches(
            self.merchant_secret, merchant_secret
        )


def _matches(configured: str | None, given: str) -> bool:
    return configured is None or hmac.compare_digest(configured.encode(), given.encode())


def load_devices(path: Path) -> DevicesConfig:
    """A devices file (TOML, or JSON by its `.json` suffix); raises `SimConfigError`."""
    data = read_settings_file(path, "devices", SimConfigError)
    return structure_strict(data, DevicesConfig, str(path), SimConfigError)
