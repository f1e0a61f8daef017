"""The fold on plain data: each rule of docs/protocol.md §7, and the rows of each flow of §6.

Every violation is a minimal session that breaks exactly that rule, and must give
exactly its finding. Every valid flow that looks like a violation (an abort that
answers an action, responses in either order, several devices or sessions at once)
must give none. Durations are the differences of the recorded event times.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from p3log.projections.rows import (
    AbortRow,
    AbortWindowRow,
    ActionWaitRow,
    LatencyRow,
    Micros,
    TransactionRow,
    TransactionStateRow,
)
from tests.projections.events import USB, WIFI, Recording, SessionBuilder, ms, project

# --- the rules: each violation gives exactly its finding -------------------------------


@pytest.mark.parametrize(
    "abortable_updates",
    [[], [False], [True, False]],
    ids=["before-any-update", "update-not-abortable", "window-closed-again"],
)
def test_abort_while_not_abortable_and_no_action_waits_is_abort_not_abortable(
    abortable_updates: list[bool],
) -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    for n, abortable in enumerate(abortable_updates):
        pos.update("t1", f"STATE_{n}", abortable)
    abort = pos.abort("a1")
    pos.abort_response("a1", "ERROR", "TRANSACTION_NO_LONGER_ABORTABLE")
    pos.response("t1")

    rows = project(pos.events)

    assert rows.rules() == [("abort_not_abortable", abort.seq, rows.key(execute))]
    (row,) = rows.aborts
    assert row.was_abortable is False
    assert row.error_type == "TRANSACTION_NO_LONGER_ABORTABLE"


def test_abort_with_no_execute_in_flight_is_abort_not_abortable_of_no_transaction() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    pos.response("t1")
    abort = pos.abort("a1")
    pos.abort_response("a1", "ERROR", "TRANSACTION_NO_LONGER_ABORTABLE")

    rows = project(pos.events)

    assert rows.rules() == [("abort_not_abortable", abort.seq, None)]
    (row,) = rows.aborts
    assert (row.transaction_key, row.was_abortable) == (None, False)
    assert rows.transaction(execute).abort_requested is False


def test_execute_before_the_previous_execute_on_its_resource_ended_is_execute_while_busy() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    second = pos.execute("t2")
    pos.response("t2", "ERROR", None, error_type="ACCESSORY_BUSY")
    pos.response("t1")

    rows = project(pos.events)

    assert rows.rules() == [("execute_while_busy", second.seq, rows.key(second))]


def test_after_a_busy_execute_is_refused_a_signature_answers_the_execute_still_running() -> None:
    # t1 never had its final response, so it still runs on the reader (docs/protocol.md §3:
    # there is always a final EXECUTE_TRANSACTION_RESPONSE); the refusal of t2 ends t2.
    pos = SessionBuilder("s1")
    pos.login()
    running = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    busy = pos.execute("t2")
    pos.response("t2", "ERROR", None, error_type="TRANSACTION_BUSY")
    action = pos.action("t1")
    signature = pos.signature("sig1")
    pos.signature_response("sig1")
    pos.response("t1")

    rows = project(pos.events)

    assert rows.rules() == [("execute_while_busy", busy.seq, rows.key(busy))]
    assert [(w.transaction_key, w.asked_seq, w.answered_seq) for w in rows.action_waits] == [
        (rows.key(running), action.seq, signature.seq)
    ]


def test_after_a_busy_execute_is_refused_an_abort_aborts_the_execute_still_running() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    running = pos.execute("t1")
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    busy = pos.execute("t2")
    pos.response("t2", "ERROR", None, error_type="TRANSACTION_BUSY")
    abort = pos.abort("a1")
    pos.abort_response("a1")
    pos.response("t1", transaction_status="ABORTED")

    rows = project(pos.events)

    assert rows.rules() == [("execute_while_busy", busy.seq, rows.key(busy))]
    assert [(a.transaction_key, a.request_seq, a.was_abortable) for a in rows.aborts] == [
        (rows.key(running), abort.seq, True)
    ]
    assert rows.transaction(running).abort_requested is True


def test_execute_after_the_previous_response_on_its_resource_is_no_finding() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    pos.execute("t1")
    pos.response("t1")
    pos.execute("t2")
    pos.response("t2")

    assert project(pos.events).findings == []


@pytest.mark.parametrize("message", ["response", "update", "action"])
def test_server_message_with_a_tag_no_request_used_is_unknown_tag(message: str) -> None:
    pos = SessionBuilder("s1")
    pos.login()
    if message == "response":
        stray = pos.response("ghost")
    elif message == "update":
        stray = pos.update("ghost", "PROCESSING", True)
    else:
        stray = pos.action("ghost")

    rows = project(pos.events)

    assert rows.rules() == [("unknown_tag", stray.seq, None)]
    assert rows.transactions == []


def test_second_response_for_a_tag_is_duplicate_response_and_changes_nothing() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    first = pos.response("t1", transaction_status="APPROVED")
    second = pos.response("t1", transaction_status="DECLINED")

    rows = project(pos.events)

    assert rows.rules() == [("duplicate_response", second.seq, rows.key(execute))]
    txn = rows.transaction(execute)
    assert (txn.outcome, txn.response_seq) == ("APPROVED", first.seq)


@pytest.mark.parametrize("message", ["update", "action"])
def test_update_or_action_after_the_response_is_message_after_response(message: str) -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    pos.response("t1")
    late = pos.update("t1", "PROCESSING", True) if message == "update" else pos.action("t1")

    rows = project(pos.events)

    assert rows.rules() == [("message_after_response", late.seq, rows.key(execute))]
    txn = rows.transaction(execute)
    assert (txn.update_count, txn.action_count) == (0, 0)
    assert rows.abort_windows == []
    assert rows.action_waits == []


def test_close_with_requests_open_is_one_missing_response_per_request() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    pos.abort("a1")
    close = pos.close(by="server")

    rows = project(pos.events)

    key = rows.key(execute)
    assert rows.rules() == [
        ("missing_response", close.seq, key),
        ("missing_response", close.seq, key),
    ]
    assert "t1" in rows.findings[0].detail  # each names its request
    assert "a1" in rows.findings[1].detail
    txn = rows.transaction(execute)
    assert (txn.outcome, txn.completed_at, txn.duration_ms, txn.response_seq) == (
        "INCOMPLETE",
        None,
        None,
        None,
    )
    (row,) = rows.aborts
    assert (row.response_status, row.answered_at, row.response_seq) == (None, None, None)


def test_close_with_a_login_open_is_missing_response_of_no_transaction() -> None:
    pos = SessionBuilder("s1")
    pos.login("l1", answered=False)
    close = pos.close()

    rows = project(pos.events)

    assert rows.rules() == [("missing_response", close.seq, None)]
    assert "l1" in rows.findings[0].detail


def test_a_tag_used_twice_by_the_client_is_tag_reused() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    first = pos.execute("t1")
    first_response = pos.response("t1", transaction_status="DECLINED")
    second = pos.execute("t1")
    second_response = pos.response("t1", transaction_status="APPROVED")

    rows = project(pos.events)

    assert rows.rules() == [("tag_reused", second.seq, rows.key(second))]
    assert rows.key(first) != rows.key(second)
    assert (rows.transaction(first).outcome, rows.transaction(first).response_seq) == (
        "DECLINED",
        first_response.seq,
    )
    assert (rows.transaction(second).outcome, rows.transaction(second).response_seq) == (
        "APPROVED",
        second_response.seq,
    )


def test_transaction_keys_stay_unique_whatever_the_tags_look_like() -> None:
    # A tag is any string (docs/protocol.md §2), so no tag may spell a reused tag's key.
    pos = SessionBuilder("s1")
    requests = []
    for tag in ["t1", "t1#2", "t1"]:
        requests.append(pos.execute(tag))
        pos.response(tag)

    rows = project(pos.events)

    assert rows.rules() == [("tag_reused", requests[2].seq, rows.key(requests[2]))]
    assert len({rows.key(request) for request in requests}) == 3


def test_signature_with_no_action_open_is_signature_without_action() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    signature = pos.signature("sig1")
    pos.signature_response("sig1", "ERROR", "TRANSACTION_ACTION_ERROR")
    pos.response("t1")

    rows = project(pos.events)

    assert rows.rules() == [("signature_without_action", signature.seq, rows.key(execute))]
    assert rows.action_waits == []


def test_bytes_that_are_no_p3_message_are_malformed_message() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    bad = pos.malformed(note="not JSON: Expecting ',' delimiter: line 1 column 17")

    rows = project(pos.events)

    assert rows.rules() == [("malformed_message", bad.seq, None)]
    assert rows.findings[0].detail == "not JSON: Expecting ',' delimiter: line 1 column 17"


# --- valid flows that look like violations: no finding -------------------------------


def test_abort_while_the_latest_update_is_abortable_is_no_finding() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    abort = pos.abort("a1")
    answer = pos.abort_response("a1")
    pos.update("t1", "ABORTED", False, transaction_status="ABORTED")
    pos.response("t1", transaction_status="ABORTED", status_code="ABORTED_MERCHANT_ABORTED")

    rows = project(pos.events)

    assert rows.findings == []
    assert rows.aborts == [
        AbortRow(
            transaction_key=rows.key(execute),
            requested_at=Micros(abort.at_us),
            was_abortable=True,
            response_status="OK",
            answered_at=Micros(answer.at_us),
            session_id="s1",
            tag="a1",
            error_type=None,
            request_seq=abort.seq,
            response_seq=answer.seq,
        )
    ]
    txn = rows.transaction(execute)
    assert (txn.abort_requested, txn.outcome, txn.status_details_code) == (
        True,
        "ABORTED",
        "ABORTED_MERCHANT_ABORTED",
    )


def test_abort_answering_an_open_action_is_allowed_though_the_update_was_not_abortable() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    action = pos.action("t1", after_ms=3)
    abort = pos.abort("a1", after_ms=9.5)
    pos.abort_response("a1")
    pos.response("t1", transaction_status="ABORTED")

    rows = project(pos.events)

    assert rows.findings == []
    assert rows.aborts[0].was_abortable is True
    assert rows.action_waits == [
        ActionWaitRow(
            transaction_key=rows.key(execute),
            action="SIGNATURE",
            asked_at=Micros(action.at_us),
            answered_at=Micros(abort.at_us),
            answer="abort",
            wait_ms=ms(action, abort),
            session_id="s1",
            asked_seq=action.seq,
            answered_seq=abort.seq,
            attempts=1,
        )
    ]


def test_abort_after_a_refused_signature_answers_the_reopened_action() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    pos.action("t1")
    pos.signature("sig1")
    pos.signature_response("sig1", "ERROR", "TRANSACTION_ACTION_ERROR")
    abort = pos.abort("a1")
    pos.abort_response("a1")
    pos.response("t1", transaction_status="ABORTED")

    rows = project(pos.events)

    assert rows.findings == []
    (wait,) = rows.action_waits
    assert (wait.answer, wait.answered_seq, wait.attempts) == ("abort", abort.seq, 2)
    assert rows.aborts[0].was_abortable is True


@pytest.mark.parametrize("abort_answered_first", [True, False], ids=["abort-first", "abort-last"])
def test_abort_response_before_or_after_the_execute_response_is_no_finding(
    abort_answered_first: bool,
) -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    abort = pos.abort("a1")
    if abort_answered_first:
        abort_answer = pos.abort_response("a1")
        response = pos.response("t1", transaction_status="ABORTED")
    else:
        response = pos.response("t1", transaction_status="ABORTED")
        abort_answer = pos.abort_response("a1")

    rows = project(pos.events)

    assert rows.findings == []
    (row,) = rows.aborts
    assert (row.transaction_key, row.was_abortable, row.response_status, row.response_seq) == (
        rows.key(execute),
        True,
        "OK",
        abort_answer.seq,
    )
    assert (row.request_seq, row.answered_at) == (abort.seq, abort_answer.at_us)
    txn = rows.transaction(execute)
    assert (txn.outcome, txn.response_seq, txn.abort_requested) == (
        "ABORTED",
        response.seq,
        True,
    )


def test_updates_after_an_abort_are_applied_as_before() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1")
    opened = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    pos.abort("a1")
    pos.abort_response("a1")
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    closed = pos.update("t1", "ABORTED", False, transaction_status="ABORTED")
    pos.response("t1", transaction_status="ABORTED")

    rows = project(pos.events)

    assert rows.findings == []
    assert rows.transaction(execute).update_count == 3
    assert [(w.opened_seq, w.closed_seq) for w in rows.abort_windows] == [(opened.seq, closed.seq)]
    assert [state.state for state in rows.states] == [
        "WAITING_FOR_CARD_PRESENTATION",
        "WAITING_FOR_CARD_PRESENTATION",
        "ABORTED",
    ]


def test_two_devices_in_one_session_each_run_their_own_execute() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    usb = pos.execute("t-usb", USB, 10)
    wifi = pos.execute("t-wifi", WIFI, 20)
    pos.update("t-usb", "PROCESSING", False)
    pos.update("t-wifi", "WAITING_FOR_CARD_PRESENTATION", True)
    usb_action = pos.action("t-usb")
    abort = pos.abort("a-wifi", WIFI)
    pos.abort_response("a-wifi", resource=WIFI)
    usb_signature = pos.signature("sig-usb", USB)
    pos.signature_response("sig-usb")
    pos.response("t-wifi", transaction_status="ABORTED")
    pos.response("t-usb", transaction_status="APPROVED")

    rows = project(pos.events)

    assert rows.findings == []
    assert [(a.transaction_key, a.request_seq, a.was_abortable) for a in rows.aborts] == [
        (rows.key(wifi), abort.seq, True)
    ]
    assert [
        (w.transaction_key, w.asked_seq, w.answered_seq, w.answer) for w in rows.action_waits
    ] == [(rows.key(usb), usb_action.seq, usb_signature.seq, "signature")]
    assert (rows.transaction(usb).outcome, rows.transaction(usb).abort_requested) == (
        "APPROVED",
        False,
    )
    assert (rows.transaction(wifi).outcome, rows.transaction(wifi).abort_requested) == (
        "ABORTED",
        True,
    )
    assert (rows.transaction(usb).resource, rows.transaction(wifi).resource) == (USB, WIFI)


def test_two_concurrent_sessions_with_the_same_tags_stay_apart() -> None:
    recording = Recording()
    one, two = recording.session("s-one"), recording.session("s-two")
    one.login()
    two.login()
    first = one.execute("t1", USB, 10)
    second = two.execute("t1", USB, 20)
    one.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    two.update("t1", "PROCESSING", False)
    abort = one.abort("a1")
    one.abort_response("a1")
    two.action("t1")
    signature = two.signature("sig1")
    two.signature_response("sig1")
    one.response("t1", transaction_status="ABORTED")
    two.response("t1", transaction_status="APPROVED")
    one.close()
    two.close()

    rows = project(recording.events)

    assert rows.findings == []
    assert rows.key(first) != rows.key(second)
    assert [
        (t.session_id, t.tag, t.amount, t.outcome)
        for t in sorted(rows.transactions, key=lambda t: t.request_seq)
    ] == [
        ("s-one", "t1", Decimal(10), "ABORTED"),
        ("s-two", "t1", Decimal(20), "APPROVED"),
    ]
    assert [(a.transaction_key, a.request_seq) for a in rows.aborts] == [
        (rows.key(first), abort.seq)
    ]
    assert [(w.transaction_key, w.answered_seq) for w in rows.action_waits] == [
        (rows.key(second), signature.seq)
    ]


def test_an_amend_interleaved_with_an_execute_is_its_own_transaction() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1", USB, 30)
    amend = pos.amend("r1", "REFUND", referenced="ab" * 16, amount=5)
    pos.update("r1", "PROCESSING", False, transaction_status="PENDING")
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    amend_response = pos.response("r1", transaction_status="APPROVED")
    pos.update("t1", "PROCESSING", False)
    execute_response = pos.response("t1", transaction_status="DECLINED")

    rows = project(pos.events)

    assert rows.findings == []
    refund, charge = rows.transaction(amend), rows.transaction(execute)
    assert (
        refund.operation,
        refund.resource,
        refund.transaction_type,
        refund.amount,
        refund.referenced_transaction_identifier,
        refund.update_count,
        refund.outcome,
        refund.response_seq,
    ) == ("amend", None, "REFUND", Decimal(5), "ab" * 16, 1, "APPROVED", amend_response.seq)
    assert (
        charge.operation,
        charge.resource,
        charge.transaction_type,
        charge.amount,
        charge.update_count,
        charge.outcome,
        charge.response_seq,
    ) == ("execute", USB, "CHARGE", Decimal(30), 2, "DECLINED", execute_response.seq)


# --- transactions ----------------------------------------------------------------------


def test_an_approved_execute_is_one_transaction_row() -> None:
    pos = SessionBuilder("s1")
    pos.login()
    execute = pos.execute("t1", USB, 90.02, after_ms=2)
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True, after_ms=0.8)
    pos.update("t1", "PROCESSING", False, after_ms=21)
    pos.action("t1", after_ms=13)
    pos.signature("sig1", after_ms=4.2)
    pos.signature_response("sig1")
    response = pos.response("t1", transaction_status="APPROVED", after_ms=3.3)

    rows = project(pos.events)

    assert rows.transactions == [
        TransactionRow(
            transaction_key=rows.key(execute),
            session_id="s1",
            tag="t1",
            operation="execute",
            resource=USB,
            requested_at=Micros(execute.at_us),
            completed_at=Micros(response.at_us),
            outcome="APPROVED",
            transaction_identifier=pos.identifier("t1"),
            amount=Decimal("90.02"),
            currency="EUR",
            abort_requested=False,
            update_count=2,
            action_count=1,
            duration_ms=ms(execute, response),
            transaction_type="CHARGE",
            status_details_code="APPROVED",
            error_type=None,
            referenced_transaction_identifier=None,
            request_seq=execute.seq,
            response_seq=response.seq,
        )
    ]


@pytest.mark.parametrize("status", ["APPROVED", "DECLINED", "ABORTED"])
def test_outcome_is_the_final_transaction_status(status: str) -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.response("t1", transaction_status=status)

    txn = project(pos.events).transaction(execute)

    assert (txn.outcome, txn.error_type) == (status, None)


@pytest.mark.parametrize("status", ["ERROR", "error"])
def test_outcome_of_an_error_response_is_error_with_its_type(status: str) -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.update("t1", "FAILED", False, transaction_status="ERROR")
    pos.response("t1", status, None, error_type="SERVER_TIMEOUT")

    rows = project(pos.events)

    assert rows.findings == []
    txn = rows.transaction(execute)
    assert (txn.outcome, txn.error_type, txn.transaction_identifier) == (
        "ERROR",
        "SERVER_TIMEOUT",
        pos.identifier("t1"),
    )


def test_outcome_without_a_response_is_incomplete() -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)

    txn = project(pos.events).transaction(execute)

    assert (txn.outcome, txn.completed_at, txn.duration_ms) == ("INCOMPLETE", None, None)


# --- abort windows ---------------------------------------------------------------------


def test_abort_window_closes_at_the_first_update_that_is_not_abortable() -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.update("t1", "CONNECTING_TO_ACCESSORY", False)
    opened = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True, after_ms=4)
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True, after_ms=7)
    closed = pos.update("t1", "PROCESSING", False, after_ms=19.5)
    pos.response("t1")

    rows = project(pos.events)

    assert rows.abort_windows == [
        AbortWindowRow(
            transaction_key=rows.key(execute),
            opened_at=Micros(opened.at_us),
            closed_at=Micros(closed.at_us),
            duration_ms=ms(opened, closed),
            session_id="s1",
            opened_seq=opened.seq,
            closed_seq=closed.seq,
        )
    ]


def test_each_abortable_stretch_is_its_own_window() -> None:
    pos = SessionBuilder("s1")
    pos.execute("t1")
    first = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    first_end = pos.update("t1", "PROCESSING", False)
    second = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    second_end = pos.update("t1", "PROCESSING", False)
    pos.response("t1")

    rows = project(pos.events)

    assert [(w.opened_seq, w.closed_seq, w.duration_ms) for w in rows.abort_windows] == [
        (first.seq, first_end.seq, ms(first, first_end)),
        (second.seq, second_end.seq, ms(second, second_end)),
    ]


def test_abort_window_open_at_the_response_closes_at_the_response() -> None:
    pos = SessionBuilder("s1")
    pos.execute("t1")
    opened = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    response = pos.response("t1", transaction_status="ABORTED", after_ms=60)

    (window,) = project(pos.events).abort_windows

    assert (window.opened_seq, window.closed_seq, window.duration_ms) == (
        opened.seq,
        response.seq,
        ms(opened, response),
    )
    assert window.closed_at == response.at_us


def test_abort_window_open_at_the_close_closes_at_the_close() -> None:
    pos = SessionBuilder("s1")
    pos.execute("t1")
    opened = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)
    close = pos.close(after_ms=33)

    (window,) = project(pos.events).abort_windows

    assert (window.opened_seq, window.closed_seq, window.duration_ms) == (
        opened.seq,
        close.seq,
        ms(opened, close),
    )


def test_a_window_still_open_has_no_end() -> None:
    pos = SessionBuilder("s1")
    pos.execute("t1")
    opened = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True)

    (window,) = project(pos.events).abort_windows

    assert (window.opened_seq, window.closed_at, window.closed_seq, window.duration_ms) == (
        opened.seq,
        None,
        None,
        None,
    )


# --- action waits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_receipt", "answer"), [(False, "signature"), (True, "on_receipt")], ids=["image", "receipt"]
)
def test_a_signature_answers_the_action(on_receipt: bool, answer: str) -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    action = pos.action("t1")
    signature = pos.signature("sig1", on_receipt=on_receipt, after_ms=17.25)
    pos.signature_response("sig1")
    pos.response("t1")

    rows = project(pos.events)

    assert rows.findings == []
    assert rows.action_waits == [
        ActionWaitRow(
            transaction_key=rows.key(execute),
            action="SIGNATURE",
            asked_at=Micros(action.at_us),
            answered_at=Micros(signature.at_us),
            answer=answer,
            wait_ms=ms(action, signature),
            session_id="s1",
            asked_seq=action.seq,
            answered_seq=signature.seq,
            attempts=1,
        )
    ]


def test_a_refused_signature_reopens_the_action_and_the_second_answers_it() -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    action = pos.action("t1")
    pos.signature("sig1", after_ms=5)
    pos.signature_response("sig1", "ERROR", "TRANSACTION_ACTION_ERROR")
    second = pos.signature("sig2", on_receipt=True, after_ms=11)
    pos.signature_response("sig2")
    pos.response("t1")

    rows = project(pos.events)

    assert rows.findings == []
    assert rows.action_waits == [
        ActionWaitRow(
            transaction_key=rows.key(execute),
            action="SIGNATURE",
            asked_at=Micros(action.at_us),
            answered_at=Micros(second.at_us),
            answer="on_receipt",
            wait_ms=ms(action, second),
            session_id="s1",
            asked_seq=action.seq,
            answered_seq=second.seq,
            attempts=2,
        )
    ]


def test_a_refused_abort_during_an_action_leaves_it_open_for_the_signature() -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    action = pos.action("t1")
    pos.abort("a1", after_ms=1)
    pos.abort_response("a1", "ERROR", "TRANSACTION_NO_LONGER_ABORTABLE")
    signature = pos.signature("g1", after_ms=2)
    pos.signature_response("g1")
    response = pos.response("t1")

    rows = project(pos.events)

    assert rows.findings == []
    (wait,) = rows.action_waits
    assert (wait.answer, wait.answered_seq, wait.attempts) == ("signature", signature.seq, 2)
    assert wait.wait_ms == ms(action, signature)
    (latency,) = [row for row in rows.latencies if row.step_seq == response.seq]
    assert latency.transaction_key == rows.key(execute)
    assert latency.pos_ms == ms(action, signature)


@pytest.mark.parametrize("end", ["response", "close"])
def test_an_action_never_answered_has_no_answer(end: str) -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.update("t1", "PROCESSING", False)
    action = pos.action("t1")
    if end == "response":
        pos.response("t1", "ERROR", None, error_type="SERVER_TIMEOUT")
    else:
        pos.close()

    rows = project(pos.events)

    (wait,) = rows.action_waits
    assert (wait.transaction_key, wait.asked_seq) == (rows.key(execute), action.seq)
    assert (wait.answer, wait.answered_at, wait.answered_seq, wait.wait_ms, wait.attempts) == (
        None,
        None,
        None,
        None,
        0,
    )
    assert rows.transaction(execute).action_count == 1


def test_a_signature_after_the_action_was_answered_is_signature_without_action() -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    pos.action("t1")
    first = pos.signature("sig1")
    pos.signature_response("sig1")
    again = pos.signature("sig2")
    pos.signature_response("sig2")
    pos.response("t1")

    rows = project(pos.events)

    assert rows.rules() == [("signature_without_action", again.seq, rows.key(execute))]
    (wait,) = rows.action_waits
    assert (wait.answered_seq, wait.attempts) == (first.seq, 1)


# --- transaction states ----------------------------------------------------------------


def test_each_update_is_a_state_lasting_until_the_next_update_or_the_response() -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    connecting = pos.update("t1", "CONNECTING_TO_ACCESSORY", False, after_ms=0.9)
    waiting = pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", True, after_ms=4.1)
    pos.action("t1", after_ms=2)  # an action is no state of its own
    pos.signature("sig1")
    pos.signature_response("sig1")
    response = pos.response("t1", after_ms=27)

    rows = project(pos.events)

    key = rows.key(execute)
    assert rows.states == [
        TransactionStateRow(
            transaction_key=key,
            session_id="s1",
            seq=connecting.seq,
            state="CONNECTING_TO_ACCESSORY",
            state_details="CONNECTING_TO_ACCESSORY_DETAILS",
            abortable=False,
            entered_at=Micros(connecting.at_us),
            time_in_state_ms=ms(connecting, waiting),
        ),
        TransactionStateRow(
            transaction_key=key,
            session_id="s1",
            seq=waiting.seq,
            state="WAITING_FOR_CARD_PRESENTATION",
            state_details="WAITING_FOR_CARD_PRESENTATION_DETAILS",
            abortable=True,
            entered_at=Micros(waiting.at_us),
            time_in_state_ms=ms(waiting, response),
        ),
    ]


def test_the_state_at_the_close_lasts_until_the_close() -> None:
    pos = SessionBuilder("s1")
    pos.execute("t1")
    processing = pos.update("t1", "PROCESSING", False)
    close = pos.close(after_ms=40)

    (state,) = project(pos.events).states

    assert (state.seq, state.time_in_state_ms) == (processing.seq, ms(processing, close))


# --- latencies -------------------------------------------------------------------------


def test_latencies_time_each_step_from_its_request_and_split_off_the_pos_wait() -> None:
    pos = SessionBuilder("s1")
    login = pos.login()
    execute = pos.execute("t1", after_ms=3)
    first_update = pos.update("t1", "CONNECTING_TO_ACCESSORY", False, after_ms=1.2)
    pos.update("t1", "PROCESSING", False, after_ms=8)
    action = pos.action("t1", after_ms=5)
    signature = pos.signature("sig1", after_ms=23.4)
    signature_answer = pos.signature_response("sig1", after_ms=0.6)
    pos.update("t1", "APPROVED", False, after_ms=2)
    response = pos.response("t1", after_ms=1.1)

    rows = project(pos.events)

    key = rows.key(execute)
    pos_ms = ms(action, signature)

    def step(name: str, request_seq: int, at_seq: int, waited_ms: float = 0.0) -> LatencyRow:
        request, at = pos.events[request_seq - 1], pos.events[at_seq - 1]
        return LatencyRow(
            session_id="s1",
            transaction_key=None if request is login else key,
            tag=request.tag,
            request_type=request.msg_type or "",
            step=name,
            requested_at=Micros(request.at_us),
            step_at=Micros(at.at_us),
            latency_ms=ms(request, at),
            server_ms=ms(request, at) - waited_ms,
            pos_ms=waited_ms,
            request_seq=request.seq,
            step_seq=at.seq,
        )

    assert sorted(rows.latencies, key=lambda row: row.step_seq) == [
        step("response", login.seq, login.seq + 1),
        step("first_update", execute.seq, first_update.seq),
        step("action", execute.seq, action.seq),
        step("response", signature.seq, signature_answer.seq),
        step("response", execute.seq, response.seq, pos_ms),
    ]


def test_pos_time_of_a_refused_signature_runs_until_the_accepted_answer() -> None:
    pos = SessionBuilder("s1")
    execute = pos.execute("t1")
    action = pos.action("t1", after_ms=2)
    pos.signature("sig1", after_ms=6)
    pos.signature_response("sig1", "ERROR", "TRANSACTION_ACTION_ERROR", after_ms=1)
    accepted = pos.signature("sig2", after_ms=9)
    pos.signature_response("sig2")
    response = pos.response("t1", after_ms=3)

    rows = project(pos.events)

    (total,) = (
        row for row in rows.latencies if row.request_seq == execute.seq and row.step == "response"
    )
    assert (total.step_seq, total.latency_ms, total.pos_ms) == (
        response.seq,
        ms(execute, response),
        ms(action, accepted),
    )
    assert total.server_ms == pytest.approx(ms(execute, response) - ms(action, accepted))
