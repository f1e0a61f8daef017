"""The scripted POS in-process: every shipped script against a fresh default simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p3log.pos.runner import RunFailed, format_result, run_script
from p3log.pos.script import load_script, script_from_dict
from p3log.sim import SimConfig, load_scenario, serve_sim

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pos"
SCRIPTS = sorted(path.name for path in FIXTURES.glob("*.toml"))


async def start_default_sim(nursery: trio.Nursery, transport: str) -> str:
    config = SimConfig(scenario=load_scenario("default"), time_scale=0.01, seed=3)
    port = await nursery.start(serve_sim, config, "127.0.0.1", 0, transport)
    return f"ws://127.0.0.1:{port}/" if transport == "ws" else f"tcp://127.0.0.1:{port}"


@pytest.mark.parametrize("transport", ["ws", "tcp"])
@pytest.mark.parametrize("name", SCRIPTS)
async def test_every_script_meets_its_expectations(
    nursery: trio.Nursery, transport: str, name: str
) -> None:
    url = await start_default_sim(nursery, transport)
    script = load_script(FIXTURES / name)
    with trio.fail_after(30):
        results = await run_script(script, url, secret="any")
    meanwhile = sum(step.meanwhile is not None for step in script.steps)
    assert len(results) == len(script.steps) + meanwhile
    failed = [format_result(result) for result in results if result.as_expected is False]
    assert failed == [], "\n".join(failed)


async def test_outcomes_identifiers_and_amends_line_up(nursery: trio.Nursery) -> None:
    url = await start_default_sim(nursery, "ws")
    results = await run_script(load_script(FIXTURES / "demo.toml"), url, secret="any")
    by_decision = {result.step.decision: result for result in results}
    assert by_decision["abort_after=3"].outcome == "ABORTED"
    assert by_decision["abort_during_action"].outcome == "ABORTED"
    assert by_decision["meanwhile:approve"].error_type == "ACCESSORY_BUSY"
    # A capture and a tip adjust amend the previous transaction in place; a refund is new.
    sale, refund = results[0], results[1]
    assert refund.identifier not in (None, sale.identifier)
    capture = by_decision["capture_previous"]
    assert capture.identifier == results[results.index(capture) - 1].identifier
    # The dropped connection is reported with the identifier its updates carried,
    # and the next transaction ran on a new connection.
    lost = next(result for result in results if result.outcome == "CONNECTION_LOST")
    assert lost.identifier is not None and len(lost.identifier) == 32
    assert results[-1].outcome == "APPROVED"


async def test_an_amend_without_a_previous_transaction_is_skipped(nursery: trio.Nursery) -> None:
    url = await start_default_sim(nursery, "tcp")
    script = script_from_dict(
        {"login": {"merchant_identifier": "m"}, "transaction": [{"refund_previous": True}]}
    )
    (result,) = await run_script(script, url, secret="any")
    assert result.outcome == "SKIPPED"


async def test_no_device_matches(nursery: trio.Nursery) -> None:
    url = await start_default_sim(nursery, "tcp")
    script = script_from_dict(
        {
            "login": {"merchant_identifier": "m"},
            "device": {"name": "Kitchen"},
            "transaction": [{"amount": 1}],
        }
    )
    with pytest.raises(RunFailed, match="no device matches name 'Kitchen'"):
        await run_script(script, url, secret="any")


async def test_nothing_listening_is_a_run_failure() -> None:
    script = script_from_dict(
        {"login": {"merchant_identifier": "m"}, "transaction": [{"amount": 1}]}
    )
    with pytest.raises(RunFailed, match="cannot start a session"):
        await run_script(script, "tcp://127.0.0.1:9", secret="any")
