"""The serve plan as a state machine: plain data in, decisions out; no sockets, no clocks."""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
import pytest

from p3log.protocol import jsontext
from p3log.protocol.dialect import dialect_from_dict
from p3log.replay.divergence import Divergence, OnUnexpected
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Close, Matched, Outgoing, Pacing, Send, ServePlan, retagged
from p3log.store.lifecycle import to_json
from tests.replay.sessions import (
    TX_ID,
    USB,
    Builder,
    abort,
    amend,
    amend_ok,
    execute,
    login,
    login_ok,
    response,
    signature,
    signature_flow,
    update,
)

ASAP = Pacing("asap")
WIFI = "devices/wifiReader"


def wire(obj: dict[str, Any]) -> bytes:
    return jsontext.dumps(obj).encode()


def sent(outgoing: list[Outgoing]) -> list[dict[str, Any]]:
    """The decoded messages among `outgoing` (closes left out)."""
    return [json.loads(item.data) for item in outgoing if isinstance(item, Send)]


def kinds(outgoing: list[Outgoing]) -> list[tuple[str, str]]:
    return [(m["type"], m["tag"]) for m in sent(outgoing)]


def matched(plan: ServePlan, obj: dict[str, Any], now: float = 0.0) -> int:
    result = plan.receive(wire(obj), now)
    assert isinstance(result, Matched), result.summary() if isinstance(result, Divergence) else ""
    return result.recorded.seq


def test_the_pos_gets_the_recording_under_its_own_tags() -> None:
    plan = ServePlan(signature_flow().build(), pacing=ASAP)
    plan.start(0.0)
    assert plan.next_deadline() is None and plan.take_due(0.0) == []
    assert matched(plan, login("l-1")) == 1
    assert kinds(plan.take_due(0.0)) == [("LOGIN_MERCHANT_RESPONSE", "l-1")]
    assert matched(plan, execute("e-1")) == 3
    assert kinds(plan.take_due(0.0)) == [
        ("EXECUTE_TRANSACTION_UPDATE", "e-1"),
        ("EXECUTE_TRANSACTION_ACTION", "e-1"),
    ]
    assert matched(plan, signature("s-1", "another shopper's signature")) == 6
    assert kinds(plan.take_due(0.0)) == [
        ("SUBMIT_SIGNATURE_RESPONSE", "s-1"),
        ("EXECUTE_TRANSACTION_UPDATE", "e-1"),
        ("EXECUTE_TRANSACTION_RESPONSE", "e-1"),
    ]
    assert plan.complete and plan.outcome == "complete"
    assert plan.pos_matched == plan.pos_recorded == 3
    assert plan.server_sent == plan.server_recorded == 6


def test_a_message_nothing_changes_in_goes_out_as_the_recorded_bytes() -> None:
    recording = signature_flow().build()
    plan = ServePlan(recording, pacing=ASAP)
    plan.start(0.0)
    plan.receive(wire(login("L")), 0.0)  # the recorded tag itself: nothing to rename
    (item,) = plan.take_due(0.0)
    assert isinstance(item, Send) and item.data == recording.messages[1].raw


@pytest.mark.parametrize(("speed", "scale"), [(1.0, 1.0), (10.0, 0.1)])
def test_recorded_gaps_are_kept_from_when_the_pos_message_arrived(
    speed: float, scale: float
) -> None:
    plan = ServePlan(signature_flow().build(), pacing=Pacing.at_speed(speed))
    plan.start(0.0)
    matched(plan, login("l"), now=100.0)
    assert plan.next_deadline() == pytest.approx(100.0 + 0.001 * scale)
    assert plan.take_due(100.0) == []
    assert kinds(plan.take_due(100.0 + 0.001 * scale)) == [("LOGIN_MERCHANT_RESPONSE", "l")]
    matched(plan, execute("e"), now=200.0)  # update +1 ms, action +6 ms after the execute
    assert plan.next_deadline() == pytest.approx(200.0 + 0.001 * scale)
    # Deadlines are absolute: a late look finds both due at once, nothing shifted.
    assert len(plan.take_due(200.0 + 0.1)) == 2
    assert plan.next_deadline() is None


def test_asap_and_reactive_never_wait_for_time() -> None:
    for pacing in (Pacing("asap"), Pacing("reactive")):
        plan = ServePlan(signature_flow().build(), pacing=pacing)
        plan.start(0.0)
        matched(plan, login("l"), now=5.0)
        assert plan.next_deadline() == 5.0
        matched(plan, execute("e"), now=6.0)
        assert len(plan.take_due(6.0)) == 3  # login response, update, action


def test_server_messages_before_the_first_pos_message_follow_the_opening() -> None:
    recording = (
        Builder().server(2, update("X", "CREATED")).pos(3, login("L")).server(4, login_ok("L"))
    )
    plan = ServePlan(recording.build(), pacing=Pacing.at_speed(1.0))
    plan.start(50.0)
    assert plan.next_deadline() == pytest.approx(50.002)
    assert kinds(plan.take_due(50.002)) == [("EXECUTE_TRANSACTION_UPDATE", "X")]


def interleaved() -> Builder:
    """An execute on the USB reader, and a refund the POS started while it ran."""
    return (
        Builder()
        .pos(0, execute("E"))
        .server(50, update("E", "PROCESSING"))
        .pos(51, amend("A"))
        .server(52, amend_ok("A"))
        .server(60, response("E"))
    )


def test_an_operation_may_start_early_and_the_recorded_order_still_holds() -> None:
    plan = ServePlan(interleaved().build(), pacing=Pacing.at_speed(1.0))
    plan.start(0.0)
    matched(plan, execute("e"), now=0.0)
    # The refund comes 10 ms in, before the update recorded ahead of it went out...
    assert matched(plan, amend("a"), now=0.010) == 3
    # ...its response is due at 11 ms and the execute's response (which follows the
    # amend) at 18 ms, but both wait for that update, due at 50 ms.
    assert plan.next_deadline() == pytest.approx(0.050)
    assert plan.take_due(0.049) == []
    assert kinds(plan.take_due(0.050)) == [
        ("EXECUTE_TRANSACTION_UPDATE", "e"),
        ("AMEND_TRANSACTION_RESPONSE", "a"),
        ("EXECUTE_TRANSACTION_RESPONSE", "e"),
    ]


def test_requests_recorded_back_to_back_may_come_in_either_order() -> None:
    recording = (
        Builder()
        .pos(0, execute("E1"))
        .pos(1, execute("E2", resource=WIFI))
        .server(2, update("E2", "PROCESSING", resource=WIFI))
        .server(3, update("E1", "PROCESSING"))
        .server(4, response("E1"))
        .server(5, response("E2", resource=WIFI))
    )
    plan = ServePlan(recording.build(), pacing=ASAP)
    plan.start(0.0)
    assert matched(plan, execute("wifi", resource=WIFI)) == 2
    assert kinds(plan.take_due(0.0)) == [("EXECUTE_TRANSACTION_UPDATE", "wifi")]
    # The USB update follows the WiFi request but belongs to the USB one: it waits.
    assert plan.take_due(0.0) == []
    assert matched(plan, execute("usb")) == 1
    assert kinds(plan.take_due(0.0)) == [
        ("EXECUTE_TRANSACTION_UPDATE", "usb"),
        ("EXECUTE_TRANSACTION_RESPONSE", "usb"),
        ("EXECUTE_TRANSACTION_RESPONSE", "wifi"),
    ]


def test_a_message_whose_server_messages_were_not_released_is_no_candidate() -> None:
    plan = ServePlan(signature_flow().build(), pacing=ASAP)
    plan.start(0.0)
    divergence = plan.receive(wire(execute("e")), 0.0)
    assert isinstance(divergence, Divergence)
    assert divergence.summary() == (
        "the POS sent EXECUTE_TRANSACTION_REQUEST (tag e), but the recording expected "
        "LOGIN_MERCHANT_REQUEST (seq 1)"
    )


def counting_ids() -> Any:
    numbers = itertools.count(1)
    return lambda old: f"{next(numbers):032x}"


def refund_flow() -> Builder:
    return (
        Builder()
        .pos(0, execute("E"))
        .server(1, update("E", "PROCESSING"))
        .server(2, response("E"))
        .pos(3, amend("A", TX_ID))
        .server(4, amend_ok("A"))
    )


@pytest.mark.parametrize("compared", [False, True])
def test_fresh_ids_are_consistent_and_the_amend_refers_to_them(compared: bool) -> None:
    volatile = VolatilePaths.default()
    if compared:  # hold the POS to referring to the right transaction
        volatile = volatile.without(["**.referencedTransactionIdentifier"])
    plan = ServePlan(
        refund_flow().build(), pacing=ASAP, fresh_ids=True, new_id=counting_ids(), volatile=volatile
    )
    plan.start(0.0)
    matched(plan, execute("e"))
    update_sent, response_sent = sent(plan.take_due(0.0))
    fresh = f"{1:032x}"
    assert update_sent["executeTransactionUpdate"]["transaction"]["identifier"] == fresh
    tx = response_sent["executeTransactionResponse"]["transaction"]
    assert tx["identifier"] == fresh and tx["merchantReceipt"]["lines"] == [f"Transaction {fresh}"]
    assert matched(plan, amend("a", fresh)) == 4
    (refund,) = sent(plan.take_due(0.0))
    assert refund["amendTransactionResponse"]["transaction"]["identifier"] == f"{2:032x}"
    assert plan.complete


def test_an_amend_of_the_wrong_transaction_diverges_where_references_are_compared() -> None:
    volatile = VolatilePaths.default().without(["**.referencedTransactionIdentifier"])
    plan = ServePlan(refund_flow().build(), pacing=ASAP, fresh_ids=True, volatile=volatile)
    plan.start(0.0)
    matched(plan, execute("e"))
    plan.take_due(0.0)
    divergence = plan.receive(wire(amend("a", "2" * 32)), 0.0)
    assert isinstance(divergence, Divergence)
    assert (
        "differs at amendTransactionRequest.transactionParameters.referencedTransactionIdentifier"
        in divergence.summary()
    )


def aborted_where_it_signed(mode: OnUnexpected) -> tuple[ServePlan, Divergence]:
    plan = ServePlan(signature_flow().build(), pacing=ASAP, on_unexpected=mode)
    plan.start(0.0)
    matched(plan, login("l"))
    matched(plan, execute("e"))
    plan.take_due(0.0)
    divergence = plan.receive(wire(abort("a")), 0.0)
    assert isinstance(divergence, Divergence)
    return plan, divergence


def test_fail_records_the_divergence_and_sends_nothing_more() -> None:
    plan, divergence = aborted_where_it_signed("fail")
    assert divergence.summary() == (
        "the POS sent ABORT_TRANSACTION_REQUEST (tag a), but the recording expected "
        "SUBMIT_SIGNATURE_REQUEST (seq 6)"
    )
    assert plan.failed is divergence and plan.outcome == "diverged"
    assert divergence.reply is None
    assert plan.next_deadline() is None and plan.take_due(1e9) == []
    assert plan.pos_closed() is None  # the replay closes; no second divergence


def test_skip_ignores_the_message_and_the_replay_goes_on() -> None:
    plan, divergence = aborted_where_it_signed("skip")
    assert divergence.reply is None and plan.failed is None
    assert plan.take_due(0.0) == []
    matched(plan, signature("s"))
    assert len(plan.take_due(0.0)) == 3
    assert plan.outcome == "complete" and plan.divergences == [divergence]


def test_error_answers_with_an_error_response_before_anything_else() -> None:
    plan, divergence = aborted_where_it_signed("error")
    (reply,) = sent(plan.take_due(0.0))
    assert reply == {
        "type": "ABORT_TRANSACTION_RESPONSE",
        "tag": "a",
        "resource": USB,
        "status": "ERROR",
        "error": {
            "type": "PARAMETER_INVALID",
            "source": "PARAMETER",
            "message": "this ABORT_TRANSACTION_REQUEST diverges from the recorded session rec-1",
        },
    }
    assert divergence.reply is not None and json.loads(divergence.reply) == reply
    # The replay goes on as recorded once the POS does.
    matched(plan, signature("s"))
    assert kinds(plan.take_due(0.0))[0] == ("SUBMIT_SIGNATURE_RESPONSE", "s")
    assert plan.outcome == "complete" and plan.divergences == [divergence]


def test_error_replies_follow_the_dialect_and_never_answer_what_is_no_request() -> None:
    dialect = dialect_from_dict(
        {
            "abort": {"request_type": "CANCEL_REQUEST", "response_type": "CANCEL_ANSWER"},
            "error": {"type_key": "code", "source_key": "origin", "message_key": "text"},
        }
    )
    plan = ServePlan(signature_flow().build(), pacing=ASAP, on_unexpected="error", dialect=dialect)
    plan.start(0.0)
    cancel = {"type": "CANCEL_REQUEST", "tag": "c", "cancelRequest": {}}
    plan.receive(wire(cancel), 0.0)
    (reply,) = sent(plan.take_due(0.0))
    assert reply["type"] == "CANCEL_ANSWER" and "resource" not in reply
    assert set(reply["error"]) == {"code", "origin", "text"}
    not_a_request = plan.receive(wire(update("u", "PROCESSING")), 0.0)
    assert isinstance(not_a_request, Divergence) and not_a_request.reply is None
    garbage = plan.receive(b"\x00not json", 0.0)
    assert isinstance(garbage, Divergence) and garbage.reply is None
    assert garbage.summary().startswith("the POS sent bytes that are not a JSON object, but")


def test_a_body_that_differs_is_named_with_where_it_differs() -> None:
    plan = ServePlan(signature_flow().build(), pacing=ASAP)
    plan.start(0.0)
    matched(plan, login("l"))
    divergence = plan.receive(wire(execute("e", amount="12.00")), 0.0)
    assert isinstance(divergence, Divergence)
    assert divergence.summary().endswith(
        "; EXECUTE_TRANSACTION_REQUEST (seq 3) differs at "
        "executeTransactionRequest.transactionParameters.amount: recorded 10.00, got 12.00"
    )
    details = json.loads(to_json(divergence.details()))
    assert details["rule"] == "unexpected_message" and details["action"] == "fail"
    assert details["arrived"]["message"]["tag"] == "<volatile>"
    assert (
        details["arrived"]["message"]["executeTransactionRequest"]["transactionParameters"][
            "amount"
        ]
        == 12.0
    )
    (expected,) = details["expected"]
    assert expected["seq"] == 3 and expected["differs_at"]["recorded"] == 10.0


def test_a_pos_that_closes_early_diverges_one_that_closes_at_the_end_does_not() -> None:
    plan = ServePlan(signature_flow().build(), pacing=ASAP, on_unexpected="skip")
    plan.start(0.0)
    matched(plan, login("l"))
    early = plan.pos_closed()
    assert early is not None and early.rule == "closed_early"
    assert early.summary() == (
        "the POS closed the connection, but the recording expected "
        "EXECUTE_TRANSACTION_REQUEST (seq 3)"
    )
    # Everything the POS sent matched, but server messages were still to go.
    plan = ServePlan(signature_flow().build(), pacing=Pacing.at_speed(1.0))
    plan.start(0.0)
    for obj in (login("l"), execute("e"), signature("s")):
        matched(plan, obj)
    pending = plan.pos_closed()
    assert pending is not None
    assert pending.summary() == (
        "the POS closed the connection, but the recording still had server messages "
        "to send, starting with LOGIN_MERCHANT_RESPONSE (seq 2)"
    )
    done = ServePlan(signature_flow().build(), pacing=ASAP)
    done.start(0.0)
    for obj in (login("l"), execute("e"), signature("s")):
        matched(done, obj)
        done.take_due(0.0)
    assert done.pos_closed() is None


def test_a_recorded_server_close_is_replayed_after_the_last_message() -> None:
    recording = Builder().pos(0, login("L")).server(1, login_ok("L")).server_closes(5, 1011, "drop")
    plan = ServePlan(recording.build(), pacing=Pacing.at_speed(1.0))
    plan.start(0.0)
    matched(plan, login("l"), now=1.0)
    assert kinds(plan.take_due(1.001)) == [("LOGIN_MERCHANT_RESPONSE", "l")]
    assert plan.next_deadline() == pytest.approx(1.005)
    assert plan.take_due(1.005) == [Close(1011, "drop")]
    assert plan.complete and plan.next_deadline() is None


def test_more_after_the_end_of_the_recording_is_unexpected() -> None:
    plan = ServePlan(Builder().pos(0, login("L")).server(1, login_ok("L")).build(), pacing=ASAP)
    plan.start(0.0)
    matched(plan, login("l"))
    extra = plan.receive(wire(login("again")), 0.0)
    assert isinstance(extra, Divergence)
    assert extra.summary().endswith("but the recording expected nothing more from the POS")


def test_pacing_refuses_a_speed_that_is_not_positive() -> None:
    for speed in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="speed must be a positive number"):
            Pacing.at_speed(speed)


def test_retagging_keeps_the_recorded_bytes_but_the_tag() -> None:
    recorded = signature_flow().build().messages[1]  # LOGIN_MERCHANT_RESPONSE, tag "L"
    assert recorded.payload is not None
    spaced = attrs.evolve(recorded, raw=recorded.raw.replace(b'"tag":"L"', b'"tag" : "L"'))
    renamed = {**recorded.payload, "tag": "live"}
    assert retagged(spaced, renamed) == spaced.raw.replace(b'"L"', b'"live"')
    # Anything else changed, or the tag found twice: written again by the caller.
    assert retagged(recorded, {**renamed, "status": "ERROR"}) is None
    twice = attrs.evolve(recorded, raw=recorded.raw.replace(b'"OK"', b'"L"'))
    assert retagged(twice, renamed) is None
