"""The drive plan as a state machine: plain data in, decisions out; no sockets, no clocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
import pytest

from p3log.protocol import jsontext
from p3log.protocol.dialect import dialect_from_dict
from p3log.replay.divergence import Divergence
from p3log.replay.drive_plan import DrivePlan, DriveStep, Received, needs_secret
from p3log.replay.plan import Close, Pacing, Send
from p3log.replay.recording import RecordedClose, ReplayError
from p3log.replay.rewrite import IDENTIFIER_PATH
from p3log.store.lifecycle import to_json
from tests.replay.sessions import (
    MS,
    TX_ID,
    USB,
    Builder,
    abort,
    abort_ok,
    action,
    amend,
    amend_ok,
    execute,
    login,
    login_ok,
    msg,
    response,
    signature,
    signature_flow,
    signature_ok,
    transaction,
    update,
)

ASAP = Pacing("asap")
NEW_ID = "aaaabbbbccccddddeeeeffff00001111"


def wire(obj: dict[str, Any]) -> bytes:
    return jsontext.dumps(obj).encode()


def tags(*names: str) -> Iterator[str]:
    return iter(names)


def plan_for(builder: Builder, **options: Any) -> DrivePlan:
    options.setdefault("pacing", ASAP)
    options.setdefault("secret", "live-secret")
    options.setdefault("new_tag", tags("t1", "t2", "t3", "t4", "t5", "t6").__next__)
    plan = DrivePlan(builder.build(), **options)
    plan.start(0.0)
    return plan


def sends(steps: list[DriveStep]) -> list[dict[str, Any]]:
    return [json.loads(step.data) for step in steps if isinstance(step, Send)]


def kinds(steps: list[DriveStep]) -> list[tuple[str, str]]:
    return [(m["type"], m["tag"]) for m in sends(steps)]


def received(plan: DrivePlan, obj: dict[str, Any], now: float = 0.0) -> int:
    result = plan.receive(wire(obj), now)
    assert isinstance(result, Received), result.summary() if isinstance(result, Divergence) else ""
    return result.recorded.seq


def test_the_recorded_pos_side_goes_out_under_fresh_tags() -> None:
    plan = plan_for(signature_flow())
    assert plan.next_deadline() == 0.0
    (login_sent,) = sends(plan.take_due(0.0))
    assert login_sent["tag"] == "t1"
    # The store's redaction marker is replaced by the secret the plan was given.
    assert login_sent["loginMerchantRequest"]["merchantSecret"] == "live-secret"
    assert plan.take_due(0.0) == []  # the execute waits for the login's response
    assert received(plan, login_ok("t1")) == 2
    assert kinds(plan.take_due(0.0)) == [("EXECUTE_TRANSACTION_REQUEST", "t2")]
    assert received(plan, update("t2", "PROCESSING")) == 4
    assert plan.take_due(0.0) == []  # the signature answers the action, not the update
    assert received(plan, action("t2")) == 5
    (signed,) = sends(plan.take_due(0.0))
    assert (signed["type"], signed["tag"]) == ("SUBMIT_SIGNATURE_REQUEST", "t3")
    assert signed["submitSignatureRequest"] == {"signature": "iVBORw0KGgo="}  # as recorded
    for obj in (signature_ok("t3"), update("t2", "APPROVED"), response("t2")):
        received(plan, obj)
    # The recording did not say how it closed: the replay closes normally at once.
    assert plan.take_due(0.0) == [Close(1000, "")]
    assert plan.complete and plan.outcome == "complete" and plan.divergences == []
    assert (plan.pos_sent, plan.pos_recorded) == (3, 3)
    assert (plan.server_matched, plan.server_recorded) == (6, 6)
    assert plan.next_deadline() is None


def test_think_times_are_divided_by_the_speed_from_the_live_arrival() -> None:
    builder = (
        Builder()
        .pos(2, login("L"))  # 2 ms after the connection opened
        .server(3, login_ok("L"))
        .pos(13, execute("E"))  # 10 ms of think time after the login's response
        .server(14, response("E"))
    )
    plan = plan_for(builder, pacing=Pacing.at_speed(2.0))
    assert plan.next_deadline() == pytest.approx(0.001)
    assert plan.take_due(0.0009) == []
    assert kinds(plan.take_due(0.001)) == [("LOGIN_MERCHANT_REQUEST", "t1")]
    received(plan, login_ok("t1"), now=1.0)
    assert plan.next_deadline() == pytest.approx(1.005)
    assert plan.take_due(1.004) == []
    assert kinds(plan.take_due(1.005)) == [("EXECUTE_TRANSACTION_REQUEST", "t2")]


def test_a_pos_message_waits_for_every_server_message_recorded_before_it() -> None:
    builder = (
        Builder()
        .pos(1, login("L"))
        .server(2, login_ok("L"))
        .pos(3, execute("E"))
        .server(4, update("E", "WAITING_FOR_CARD_PRESENTATION", abortable=True))
        .pos(5, abort("A"))
        .server(6, abort_ok("A"))
        .server(7, update("E", "ABORTED"))
        .server(8, response("E", "ABORTED"))
        .pos(18, execute("E2"))
        .server(19, response("E2"))
    )
    plan = plan_for(builder, pacing=Pacing.at_speed(1.0))
    plan.take_due(0.001)
    received(plan, login_ok("t1"), now=0.002)
    plan.take_due(0.003)
    received(plan, update("t2", "WAITING_FOR_CARD_PRESENTATION", abortable=True), now=0.010)
    assert kinds(plan.take_due(0.011)) == [("ABORT_TRANSACTION_REQUEST", "t3")]
    # The execute's messages overtake the abort's response: another operation.
    assert received(plan, update("t2", "ABORTED"), now=0.020) == 7
    assert received(plan, response("t2", "ABORTED"), now=0.021) == 8
    assert plan.next_deadline() is not None  # (the timeout), but nothing to send yet
    assert plan.take_due(0.5) == []
    assert received(plan, abort_ok("t3"), now=0.030) == 6
    # 10 ms of think time after the last of them arrived (the response was recorded last).
    assert plan.next_deadline() == pytest.approx(0.040)
    assert kinds(plan.take_due(0.040)) == [("EXECUTE_TRANSACTION_REQUEST", "t4")]


def test_identifiers_the_live_server_issued_replace_the_recorded_ones() -> None:
    receipt = {"data": {"IDENTIFIER": {"key": "IDENTIFIER", "value": TX_ID}}}
    recorded_response = msg(
        "EXECUTE_TRANSACTION_RESPONSE",
        "E",
        {"transaction": transaction("APPROVED", merchantReceipt=receipt)},
        resource=USB,
        status="OK",
    )
    builder = (
        Builder()
        .pos(1, execute("E"))
        .server(2, recorded_response)
        .pos(3, amend("R"))
        .server(4, amend_ok("R"))
    )
    plan = plan_for(builder)
    plan.take_due(0.0)
    live = json.loads(jsontext.dumps(recorded_response).replace(TX_ID, NEW_ID), parse_float=Decimal)
    live["tag"] = "t1"
    # The new identifier, in the transaction and printed in the receipt, is no divergence.
    assert received(plan, live) == 2
    (sent,) = sends(plan.take_due(0.0))
    assert sent["amendTransactionRequest"]["transactionParameters"] == {
        "type": "REFUND",
        "referencedTransactionIdentifier": NEW_ID,
    }
    assert plan.renames.ids == {TX_ID: NEW_ID}
    assert str(IDENTIFIER_PATH) == "**.transaction.identifier"


def test_an_abort_quoting_the_execute_tag_quotes_the_live_one() -> None:
    dialect = dialect_from_dict({"abort": {"correlation": "body_tag"}})
    quoting = msg("ABORT_TRANSACTION_REQUEST", "A", {"transactionTag": "E"}, resource=USB)
    builder = (
        Builder()
        .pos(1, execute("E"))
        .server(2, update("E", "WAITING_FOR_CARD_PRESENTATION", abortable=True))
        .pos(3, quoting)
    )
    plan = plan_for(builder, dialect=dialect)
    plan.take_due(0.0)
    received(plan, update("t1", "WAITING_FOR_CARD_PRESENTATION", abortable=True))
    (sent,) = sends(plan.take_due(0.0))
    assert sent["tag"] == "t2" and sent["abortTransactionRequest"] == {"transactionTag": "t1"}


def test_a_login_needs_the_secret() -> None:
    with pytest.raises(ReplayError, match="does not hold the merchant secret"):
        DrivePlan(signature_flow().build())
    assert needs_secret(signature_flow().build())
    no_login = Builder().pos(1, execute("E")).server(2, response("E")).build()
    assert not needs_secret(no_login)
    DrivePlan(no_login)  # nothing to log in with, nothing needed


def test_fail_stops_at_the_first_server_message_that_differs() -> None:
    plan = plan_for(signature_flow())
    plan.take_due(0.0)
    received(plan, login_ok("t1"))
    plan.take_due(0.0)
    result = plan.receive(wire(update("t1", "PROCESSING")), 0.0)  # the login's tag
    assert isinstance(result, Divergence)
    # Under the login's tag, nothing more was expected; the execute's update was.
    assert result.summary() == (
        "the server sent EXECUTE_TRANSACTION_UPDATE (tag t1), but the recording expected "
        "EXECUTE_TRANSACTION_UPDATE (seq 4)"
    )
    assert plan.failed is result and plan.outcome == "diverged"
    assert plan.next_deadline() is None and plan.take_due(10.0) == []


def test_a_changed_message_names_where_it_differs() -> None:
    plan = plan_for(signature_flow())
    plan.take_due(0.0)
    received(plan, login_ok("t1"))
    plan.take_due(0.0)
    result = plan.receive(wire(update("t2", "DECLINED")), 0.0)
    assert isinstance(result, Divergence) and result.peer == "server"
    assert result.summary() == (
        "the server sent EXECUTE_TRANSACTION_UPDATE (tag t2), but the recording expected "
        "EXECUTE_TRANSACTION_UPDATE (seq 4); EXECUTE_TRANSACTION_UPDATE (seq 4) differs at "
        'executeTransactionUpdate.state: recorded "PROCESSING", got "DECLINED"'
    )
    details = json.loads(to_json(result.details()))
    assert (details["rule"], details["peer"], details["action"]) == (
        "unexpected_message",
        "server",
        "fail",
    )
    assert [e["seq"] for e in details["expected"]] == [4]


def test_continue_takes_changed_messages_skips_missing_ones_and_sets_extra_ones_aside() -> None:
    builder = (
        Builder()
        .pos(1, execute("E"))
        .server(2, update("E", "PROCESSING"))
        .server(3, update("E", "PROCESSING", abortable=True))
        .server(4, update("E", "APPROVED"))
        .server(5, response("E"))
    )
    plan = plan_for(builder, on_unexpected="continue")
    plan.take_due(0.0)
    changed = plan.receive(wire(update("t1", "CONNECTING_TO_ACCESSORY")), 0.0)
    assert isinstance(changed, Divergence) and changed.action == "continue"
    extra = plan.receive(wire(action("t1")), 0.0)  # no action was recorded at all
    assert isinstance(extra, Divergence)
    # Update 3 never comes: the approval accounts for it, as missing.
    missing = plan.receive(wire(update("t1", "APPROVED")), 0.0)
    assert isinstance(missing, Divergence)
    assert [e.seq for e in missing.expected] == [3]
    assert received(plan, response("t1")) == 5
    assert plan.take_due(0.0) == [Close(1000, "")]
    assert plan.failed is None and plan.complete and len(plan.divergences) == 3
    assert plan.server_matched == 2  # the approval and the response


def test_a_server_that_is_too_late_is_a_divergence() -> None:
    builder = Builder().pos(1, execute("E")).server(4, update("E", "PROCESSING"))
    plan = plan_for(builder, timeout=5.0)
    plan.take_due(0.1)  # the execute goes out at 0.1 s
    # Give up 5 s after the recorded 3 ms of server time.
    assert plan.next_deadline() == pytest.approx(0.1 + 0.003 + 5.0)
    assert plan.take_due(5.0) == []
    (late,) = plan.take_due(5.2)
    assert isinstance(late, Divergence) and late.rule == "timeout" and late.action == "fail"
    assert late.summary() == (
        "the server sent nothing the recording expected for 5 s, but the recording expected "
        "EXECUTE_TRANSACTION_UPDATE (seq 2)"
    )
    assert plan.outcome == "diverged"


def test_even_continue_gives_up_on_a_silent_server() -> None:
    builder = Builder().pos(1, execute("E")).server(2, update("E", "PROCESSING"))
    plan = plan_for(builder, timeout=1.0, on_unexpected="continue")
    plan.take_due(0.0)
    (late,) = plan.take_due(2.0)
    assert isinstance(late, Divergence) and plan.failed is late


def test_a_recorded_server_close_is_waited_for() -> None:
    builder = (
        Builder()
        .pos(1, execute("E"))
        .server(2, update("E", "PROCESSING"))
        .server_closes(50, 1011, "simulated connection drop")
    )
    plan = plan_for(builder, timeout=1.0)
    plan.take_due(0.0)
    received(plan, update("t1", "PROCESSING"), now=0.001)
    assert plan.take_due(0.5) == []  # no Close of ours: the server is to close
    assert plan.next_deadline() == pytest.approx(0.001 + 0.048 + 1.0)
    assert plan.server_closed(0.05) is None
    assert plan.complete and plan.finished


def test_a_server_that_closes_early_is_a_divergence() -> None:
    plan = plan_for(signature_flow())
    plan.take_due(0.0)
    received(plan, login_ok("t1"))
    plan.take_due(0.0)
    early = plan.server_closed(0.0)
    assert isinstance(early, Divergence) and early.rule == "closed_early"
    assert early.summary() == (
        "the server closed the connection, but the recording expected "
        "EXECUTE_TRANSACTION_UPDATE (seq 4)"
    )
    assert plan.outcome == "diverged"


def test_the_pos_closes_as_recorded() -> None:
    builder = Builder().pos(1, execute("E")).server(2, response("E"))
    session = attrs.evolve(builder.build(), close=RecordedClose("client", 1000, "", 42 * MS))
    plan = DrivePlan(session, pacing=Pacing.at_speed(1.0), new_tag=lambda: "t")
    plan.start(0.0)
    plan.take_due(0.001)
    received(plan, response("t"), now=0.5)
    assert plan.next_deadline() == pytest.approx(0.5 + 0.040)  # 40 ms after the response
    assert plan.take_due(0.54) == [Close(1000, "")]
    assert plan.complete


def test_recorded_refunds_amend_the_live_transaction() -> None:
    builder = (
        Builder()
        .pos(1, login("L"))
        .server(2, login_ok("L"))
        .pos(3, execute("E"))
        .server(4, response("E"))
        .pos(5, amend("R"))
        .server(6, amend_ok("R"))
        .pos(7, signature("S"))  # (a late signature: sent as recorded all the same)
        .server(8, signature_ok("S"))
    )
    plan = plan_for(builder)
    plan.take_due(0.0)
    received(plan, login_ok("t1"))
    plan.take_due(0.0)
    received(plan, response("t2", identifier=NEW_ID))
    (refund,) = sends(plan.take_due(0.0))
    reference = refund["amendTransactionRequest"]["transactionParameters"]
    assert reference["referencedTransactionIdentifier"] == NEW_ID
    received(plan, amend_ok("t3"))
    assert kinds(plan.take_due(0.0)) == [("SUBMIT_SIGNATURE_REQUEST", "t4")]


@pytest.mark.parametrize(
    ("recorded", "sent"), [(1006, 1011), (None, 1011), (1005, 1011), (4001, 4001)]
)
def test_a_recorded_close_that_cannot_be_sent_goes_out_as_the_one_fallback(
    recorded: int | None, sent: int
) -> None:
    """As the tap and the serve plan pass it on (`close_codes.passed_on`): 1011, not 1000."""
    builder = Builder().pos(1, execute("E")).server(2, response("E"))
    session = attrs.evolve(builder.build(), close=RecordedClose("client", recorded, "gone", 0))
    plan = DrivePlan(session, pacing=Pacing("asap"), new_tag=lambda: "t")
    plan.start(0.0)
    plan.take_due(0.0)
    received(plan, response("t"), now=0.5)
    assert plan.take_due(0.5) == [Close(sent, "gone")]
