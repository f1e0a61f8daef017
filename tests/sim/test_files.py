"""Scenario and devices files: every shipped scenario loads; mistakes are one clear line."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from p3log.sim import (
    DevicesConfig,
    Rule,
    Scenario,
    SimConfig,
    SimConfigError,
    load_devices,
    load_scenario,
    scenario_dir,
    scenario_names,
)
from p3log.sim.scenario import RuleCycle

SHIPPED = [
    "default",
    "approve",
    "decline",
    "signature",
    "slow",
    "server_error",
    "drop",
    "long_abortable",
]


def test_the_shipped_scenarios_are_there():
    assert set(SHIPPED) <= set(scenario_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads(name):
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.description
    assert scenario.rules
    assert load_scenario(scenario_dir() / f"{name}.toml") == scenario  # by path too


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[transaction]]\nbogus = 1\n", "transaction[0]: unknown key(s) bogus"),
        ("color = 'red'\n[[transaction]]\n", "unknown key(s) color"),
        ("[[transaction]]\npin_ms = '3'\n", "transaction[0].pin_ms: expected int, got str '3'"),
        ("[[transaction]]\n[[transaction]]\nsignature = 1\n", "transaction[1].signature"),
        ("[[transaction]]\noutcome = 'maybe'\n", "expected one of approve, decline"),
        ("[[transaction]]\nprocessor_ms = -5\n", "processor_ms"),
        ("[[transaction]]\njitter = 2.0\n", "jitter"),
        ("[[transaction]]\nserver_error_at = 'LUNCH'\n", "server_error_at"),
        (
            "[[transaction]]\ndrop_connection_at = 'WAITING_FOR_CARD_REMOVAL'\n",
            "is never reached",
        ),
        ("[[transaction]]\noutcome = 'decline'\nsignature = true\n", "only on approval"),
        ("[[transaction]]\nmatch_amount = 'lots'\n", "expected an amount"),
        ("[[transaction]]\nmatch_amount = '5.00'\n", "at least one rule without match_amount"),
        ("description = 'no rules'\n", "transaction: required key missing"),
        ("[[transaction]\n", "not valid TOML"),
    ],
)
def test_scenario_file_mistakes(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SimConfigError) as caught:
        load_scenario(str(path))
    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_an_unknown_scenario_name_lists_the_known_ones():
    with pytest.raises(SimConfigError, match=r"no scenario named 'nope' \(known: .*default"):
        load_scenario("nope")


def test_a_missing_scenario_file():
    with pytest.raises(SimConfigError, match="cannot read scenario file"):
        load_scenario("no/such/file.toml")


def test_rules_cycle_and_amounts_pick_without_moving_the_cycle():
    a, b = Rule(outcome="approve"), Rule(outcome="decline")
    special = Rule(match_amount=Decimal("90.01"), signature=True)
    cycle = RuleCycle(Scenario(rules=(a, special, b)))
    picked = [cycle.next(Decimal(x)) for x in ["1", "90.010", "2", "3", "90.01", "4"]]
    assert picked == [a, special, b, a, special, b]


def test_a_scenario_file_by_path_and_amount_matching(tmp_path):
    path = write(
        tmp_path,
        "name = 'mine'\namend_ms = 0\n[[transaction]]\n"
        "[[transaction]]\nmatch_amount = 13.13\noutcome = 'decline'\ndecline_code = 'DECLINED_X'\n",
    )
    scenario = load_scenario(path)
    assert scenario.name == "mine"
    assert scenario.rules[1].match_amount == Decimal("13.13")
    assert scenario.rules[1].decline_code == "DECLINED_X"


def test_devices_files_in_toml_and_json(tmp_path):
    toml = write(
        tmp_path,
        "merchant_secret = 's'\n[[devices]]\nidentifier = 'c1'\ntype = 'VERIFONE'\n",
        "devices.toml",
    )
    config = load_devices(toml)
    assert [d.resource for d in config.devices] == ["devices/c1"]
    assert config.devices[0].name == "c1" and config.devices[0].type == "VERIFONE"
    assert "'s'" not in repr(config)  # the secret stays out of reprs and logs
    data = {"devices": [{"identifier": "a", "resource": "r/a", "comlink": "BLUETOOTH"}]}
    as_json = write(tmp_path, json.dumps(data), "devices.json")
    assert load_devices(as_json).devices[0].resource == "r/a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[devices]]\nidentifier = 'a'\ncomlink = 'SERIAL'\n", "devices[0].comlink"),
        ("[[devices]]\nname = 'x'\n", "devices[0].identifier: required key missing"),
        ("devices = []\n", "at least one device"),
        ("[[devices]]\nidentifier = 'a'\n[[devices]]\nidentifier = 'a'\n", "same resource"),
        ("merchant_secret = 5\n", "merchant_secret: expected str"),
    ],
)
def test_devices_file_mistakes(tmp_path, text, expected):
    with pytest.raises(SimConfigError) as caught:
        load_devices(write(tmp_path, text, "devices.toml"))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_config_from_files(tmp_path):
    dialect = write(tmp_path, "[abort]\nrequest_type = 'CANCEL_REQUEST'\n", "dialect.toml")
    config = SimConfig.from_files(scenario="signature", dialect=dialect, seed=3, time_scale=0.5)
    assert config.scenario.name == "signature"
    assert config.devices == DevicesConfig()
    assert config.dialect.abort.request_type == "CANCEL_REQUEST"
    assert (config.seed, config.time_scale) == (3, 0.5)
