"""The POS script format: what loads, and the one-line errors for what does not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from p3log.pos.script import ScriptError, load_script, script_from_dict

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pos"
LOGIN = {"merchant_identifier": "shop"}


def test_a_full_script_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        """
currency = "CHF"
timeout = 5

[login]
merchant_identifier = "shop"
provider_mode = "TEST"

[device]
name = "Counter"

[[transaction]]
amount = 12.50
sign = "png"
expect = "APPROVED"
repeat = 2

[[transaction]]
refund_previous = true
amount = 2

[[transaction]]
amount = 1
currency = "EUR"
abort_after_updates = 3
force_abort = true
expect_error = "ACCESSORY_BUSY"
""",
        encoding="utf-8",
    )
    script = load_script(path)
    assert script.login.provider_mode == "TEST"
    assert script.device.name == "Counter"
    assert script.timeout == 5.0
    first, second, refund, forced = script.steps
    assert first == second
    assert first.amount == Decimal("12.5") and first.currency == "CHF" and first.sign == "png"
    assert first.decision == "sign=png"
    assert refund.amend == "REFUND" and refund.amount == Decimal(2)
    assert refund.decision == "refund_previous"
    assert forced.currency == "EUR" and forced.expect == "ERROR"
    assert forced.decision == "force_abort_after=3"


@pytest.mark.parametrize(
    ("transaction", "message"),
    [
        ({"amount": 1, "sgn": "png"}, "transaction[1] has unknown key(s) ['sgn']"),
        ({"amount": "1"}, "transaction[1]: amount must be a number, not string '1'"),
        ({"amount": 1, "sign": "pen"}, "transaction[1]: sign must be one of png, on_receipt"),
        ({"amount": 1, "repeat": 0}, "transaction[1]: repeat must be at least 1"),
        ({"amount": 1, "abort_during_action": 1}, "abort_during_action must be true or false"),
        ({"sign": "png"}, "transaction[1]: amount is missing"),
        ({"amount": 1, "expect": "APPROVD"}, "expect must be one of APPROVED"),
        (
            {"amount": 1, "sign": "png", "abort_during_action": True},
            "sign and abort_during_action both answer the action",
        ),
        ({"refund_previous": True, "sign": "png"}, "an amend takes no sign"),
        ({"tip_adjust_previous": True}, "amount is required for tip_adjust_previous"),
        ({"refund_previous": True, "capture_previous": True}, "give at most one of"),
        ({"amount": 1, "force_abort": True}, "force_abort needs abort_after_updates"),
    ],
)
def test_bad_transactions_are_refused_in_one_line(
    transaction: dict[str, object], message: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        script_from_dict({"login": LOGIN, "transaction": [transaction]}, source="s.toml")
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("s.toml: ")
    assert message in text


def test_bad_top_level_is_refused() -> None:
    with pytest.raises(ScriptError, match="login is missing"):
        script_from_dict({"transaction": [{"amount": 1}]})
    with pytest.raises(ScriptError, match=r"has unknown key\(s\) \['extra'\]"):
        script_from_dict({"login": LOGIN, "extra": 1, "transaction": [{"amount": 1}]})
    with pytest.raises(ScriptError, match="give one of name, identifier or resource"):
        script_from_dict(
            {
                "login": LOGIN,
                "device": {"name": "a", "resource": "b"},
                "transaction": [{"amount": 1}],
            }
        )
    with pytest.raises(ScriptError, match="transaction is missing"):
        script_from_dict({"login": LOGIN})


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot read script"):
        load_script(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[login\n", encoding="utf-8")
    with pytest.raises(ScriptError, match="is not valid TOML"):
        load_script(bad)


def test_every_shipped_script_loads() -> None:
    paths = sorted(FIXTURES.glob("*.toml"))
    assert any(path.name == "demo.toml" for path in paths)
    for path in paths:
        assert load_script(path).steps, path
