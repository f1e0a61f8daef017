"""`p3log diff`: operations aligned, messages compared, latencies summarised.

Plain data first (the alignment and the statistics are sans-IO), then the case the
issue names: a recording served to a POS that aborts where the original signed,
and the diff of the original and that replay, through the command line.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from p3log.cli import app
from p3log.replay.diff import (
    LatencySample,
    MessageChange,
    Stats,
    compare_latencies,
    diff_sessions,
    latency_samples,
    load_diff,
    operations,
    percentile,
)
from p3log.replay.plan import Pacing
from p3log.replay.serve import ServeConfig
from tests.replay.conftest import FixtureStores
from tests.replay.sessions import (
    TX_ID,
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
    update,
)
from tests.replay.test_serve import abort_instead_of_signing, serve_while

USB = "devices/usbReader"
NEW_ID = "0123456789abcdef0123456789abcdef"


def keys(builder: Builder) -> list[tuple[str, list[int]]]:
    return [(op.key, [m.seq for m in op.messages]) for op in operations(builder.build())]


def changes(diff: object) -> list[tuple[str, str, str | None, int | None, int | None]]:
    assert hasattr(diff, "changes")
    found: tuple[MessageChange, ...] = diff.changes
    return [(c.change, c.operation, c.msg_type, c.a_seq, c.b_seq) for c in found]


def test_aborts_and_signatures_belong_to_the_transaction_they_act_on() -> None:
    builder = (
        signature_flow()  # seq 1-9: login, an execute signed by S
        .pos(20, execute("E2"))
        .server(21, update("E2", "WAITING_FOR_CARD_PRESENTATION", abortable=True))
        .pos(22, abort("A"))
        .server(23, abort_ok("A"))
        .server(24, response("E2", "ABORTED"))
        .pos(30, amend("R"))
        .server(31, amend_ok("R"))
        .server(32, update("nobody", "PROCESSING"))  # a tag no request used
    )
    assert keys(builder) == [
        ("LOGIN_MERCHANT_REQUEST #1", [1, 2]),
        ("EXECUTE_TRANSACTION_REQUEST #1", [3, 4, 5, 8, 9]),
        ("EXECUTE_TRANSACTION_REQUEST #1 / SUBMIT_SIGNATURE_REQUEST #1", [6, 7]),
        ("EXECUTE_TRANSACTION_REQUEST #2", [10, 11, 14]),
        ("EXECUTE_TRANSACTION_REQUEST #2 / ABORT_TRANSACTION_REQUEST #1", [12, 13]),
        ("AMEND_TRANSACTION_REQUEST #1", [15, 16]),
        ("(unattributed)", [17]),
    ]


def test_a_rerun_with_new_tags_identifiers_and_clock_readings_is_no_difference() -> None:
    original = signature_flow().build("a")
    rerun = (
        Builder()
        .pos(1, login("l-2", secret="[REDACTED merchantSecret hmac-sha256:11]"))
        .server(2, login_ok("l-2"))
        .pos(3, execute("e-2"))
        .server(5, update("e-2", "PROCESSING", identifier=NEW_ID, createdTimestamp=5))
        .server(9, {**action("e-2")})
        .pos(12, signature("s-2", "another shopper's signature"))
        .server(13, signature_ok("s-2"))
        .server(14, update("e-2", "APPROVED", identifier=NEW_ID))
        .server(15, response("e-2", identifier=NEW_ID))  # its receipt prints NEW_ID
        .build("b")
    )
    diff = diff_sessions(original, rerun)
    assert diff.identical and diff.same == 9 and diff.changes == ()
    assert (
        diff.summary() == "a and b: no differences in 9 aligned messages (volatile fields ignored)"
    )


def test_changed_messages_list_every_path_that_differs() -> None:
    original = signature_flow().build("a")
    on_receipt = msg("SUBMIT_SIGNATURE_REQUEST", "S", {"signOnReceipt": True}, resource=USB)
    other = (
        Builder()
        .pos(1, login("L"))
        .server(2, login_ok("L"))
        .pos(3, execute("E", amount="12.00"))
        .server(4, update("E", "PROCESSING", amount=Decimal("12.00"), currency="CHF"))
        .server(9, action("E"))
        .pos(10, on_receipt)
        .server(11, signature_ok("S"))
        .server(12, update("E", "APPROVED"))
        .server(13, response("E"))
        .build("b")
    )
    diff = diff_sessions(original, other)
    found = {c.a_seq: [(f.path, f.a, f.b) for f in c.fields] for c in diff.changes}
    assert found == {
        3: [("executeTransactionRequest.transactionParameters.amount", 10, 12)],
        4: [
            ("executeTransactionUpdate.transaction.amount", 10, 12),
            ("executeTransactionUpdate.transaction.currency", "EUR", "CHF"),
        ],
        6: [
            ("submitSignatureRequest.signOnReceipt", "<absent>", True),
            ("submitSignatureRequest.signature", "<volatile>", "<absent>"),
        ],
    }
    assert [c.change for c in diff.changes] == ["changed"] * 3
    as_json = diff.to_json()
    assert as_json["counts"] == {"same": 6, "missing": 0, "extra": 0, "changed": 3}
    assert as_json["differences"][0]["fields"] == [
        {"path": "executeTransactionRequest.transactionParameters.amount", "a": 10, "b": 12}
    ]
    json.dumps(as_json)  # plain JSON throughout


def test_an_abort_where_the_original_signed_is_missing_and_extra_messages() -> None:
    original = signature_flow().build("a")
    aborted = (
        Builder()
        .pos(1, login("L"))
        .server(2, login_ok("L"))
        .pos(3, execute("E"))
        .server(4, update("E", "PROCESSING"))
        .server(9, action("E"))
        .pos(10, abort("A"))
        .server(11, abort_ok("A"))
        .server(12, update("E", "ABORTED"))
        .server(13, response("E", "ABORTED"))
        .build("b")
    )
    diff = diff_sessions(original, aborted)
    execute_key = "EXECUTE_TRANSACTION_REQUEST #1"
    assert changes(diff) == [
        ("changed", execute_key, "EXECUTE_TRANSACTION_UPDATE", 8, 8),
        ("changed", execute_key, "EXECUTE_TRANSACTION_RESPONSE", 9, 9),
        (
            "missing",
            f"{execute_key} / SUBMIT_SIGNATURE_REQUEST #1",
            "SUBMIT_SIGNATURE_REQUEST",
            6,
            None,
        ),
        (
            "missing",
            f"{execute_key} / SUBMIT_SIGNATURE_REQUEST #1",
            "SUBMIT_SIGNATURE_RESPONSE",
            7,
            None,
        ),
        (
            "extra",
            f"{execute_key} / ABORT_TRANSACTION_REQUEST #1",
            "ABORT_TRANSACTION_REQUEST",
            None,
            6,
        ),
        (
            "extra",
            f"{execute_key} / ABORT_TRANSACTION_REQUEST #1",
            "ABORT_TRANSACTION_RESPONSE",
            None,
            7,
        ),
    ]
    status = diff.changes[1].fields
    assert ("executeTransactionResponse.transaction.status", "APPROVED", "ABORTED") in [
        (f.path, f.a, f.b) for f in status
    ]
    assert not diff.identical


def test_an_operation_only_one_side_has_is_missing_or_extra_as_a_whole() -> None:
    base = Builder().pos(1, login("L")).server(2, login_ok("L"))
    with_refund = (
        Builder()
        .pos(1, login("L"))
        .server(2, login_ok("L"))
        .pos(3, amend("R", TX_ID))
        .server(4, amend_ok("R"))
    )
    diff = diff_sessions(base.build("a"), with_refund.build("b"))
    assert changes(diff) == [
        ("extra", "AMEND_TRANSACTION_REQUEST #1", "AMEND_TRANSACTION_REQUEST", None, 3),
        ("extra", "AMEND_TRANSACTION_REQUEST #1", "AMEND_TRANSACTION_RESPONSE", None, 4),
    ]
    reverse = diff_sessions(with_refund.build("b"), base.build("a"))
    assert [c[0] for c in changes(reverse)] == ["missing", "missing"]


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile(list(map(float, range(1, 101))), 0.95) == pytest.approx(95.05)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_latencies_per_step_and_request_type() -> None:
    samples = latency_samples(signature_flow().build())
    assert sorted((s.step, s.msg_type, s.ms) for s in samples) == [
        ("action_answer", "SUBMIT_SIGNATURE_REQUEST", 1.0),  # action at 9 ms, answer at 10
        ("first_update", "EXECUTE_TRANSACTION_REQUEST", 1.0),
        ("response", "EXECUTE_TRANSACTION_REQUEST", 10.0),
        ("response", "LOGIN_MERCHANT_REQUEST", 1.0),
        ("response", "SUBMIT_SIGNATURE_REQUEST", 1.0),
    ]
    a = [LatencySample("response", "EXECUTE_TRANSACTION_REQUEST", ms) for ms in (10, 20, 30)]
    b = [LatencySample("response", "EXECUTE_TRANSACTION_REQUEST", ms) for ms in (15, 25, 35)]
    b.append(LatencySample("first_update", "AMEND_TRANSACTION_REQUEST", 4.0))
    first, response_step = compare_latencies(a, b)
    assert (first.step, first.a, first.b) == ("first_update", None, Stats(1, 4.0, 4.0))
    assert first.delta_p50_ms is None
    assert response_step.a == Stats(3, 20.0, 29.0) and response_step.b == Stats(3, 25.0, 34.0)
    assert response_step.delta_p50_ms == 5.0 and response_step.delta_p95_ms == pytest.approx(5.0)


def cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


async def test_a_pos_that_aborts_where_the_original_signed(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    """The signature fixture served to a POS that aborts instead of signing the first
    sale: the replay stops there (fail), and the diff says what the POS did not do."""
    store = tmp_path / "store"
    session_id = fixture_stores.copy("signature", store)
    config = ServeConfig(store, session_id, pacing=Pacing("asap"))
    result, _ = await serve_while(config, abort_instead_of_signing)
    assert result is not None and result.outcome == "diverged"
    diff = load_diff(store, session_id, result.session_id)
    first, second = "EXECUTE_TRANSACTION_REQUEST #1", "EXECUTE_TRANSACTION_REQUEST #2"
    signed = " / SUBMIT_SIGNATURE_REQUEST #1"
    second_sale = [
        "EXECUTE_TRANSACTION_REQUEST",
        *["EXECUTE_TRANSACTION_UPDATE"] * 5,
        "EXECUTE_TRANSACTION_ACTION",
        "EXECUTE_TRANSACTION_UPDATE",
        "EXECUTE_TRANSACTION_RESPONSE",
    ]
    assert [(c.change, c.operation, c.msg_type) for c in diff.changes] == [
        ("missing", first, "EXECUTE_TRANSACTION_UPDATE"),
        ("missing", first, "EXECUTE_TRANSACTION_RESPONSE"),
        ("missing", first + signed, "SUBMIT_SIGNATURE_REQUEST"),
        ("missing", first + signed, "SUBMIT_SIGNATURE_RESPONSE"),
        *[("missing", second, msg_type) for msg_type in second_sale],
        ("missing", second + signed, "SUBMIT_SIGNATURE_REQUEST"),
        ("missing", second + signed, "SUBMIT_SIGNATURE_RESPONSE"),
        ("extra", first + " / ABORT_TRANSACTION_REQUEST #1", "ABORT_TRANSACTION_REQUEST"),
    ]
    assert [c.a_seq for c in diff.changes[:4]] == [14, 15, 12, 13]
    assert diff.same == 9  # login, the first sale up to its action

    abort_seq = diff.changes[-1].b_seq
    code, output = cli("diff", "--store", store, session_id, result.session_id[:10])
    assert code == 1
    assert output.splitlines()[0] == (
        f"p3log diff: {session_id} and {result.session_id}: 15 missing, 1 extra, 0 changed; "
        "9 aligned messages the same (volatile fields ignored)"
    )
    assert output.splitlines()[1:10] == [
        "differences (- only in A, + only in B, ~ changed):",
        "- EXECUTE #1: ← EXECUTE_TRANSACTION_UPDATE (A seq 14)",
        "- EXECUTE #1: ← EXECUTE_TRANSACTION_RESPONSE (A seq 15)",
        "- EXECUTE #1 / SUBMIT_SIGNATURE #1: POS → SUBMIT_SIGNATURE_REQUEST (A seq 12)",
        "- EXECUTE #1 / SUBMIT_SIGNATURE #1: ← SUBMIT_SIGNATURE_RESPONSE (A seq 13)",
        "- EXECUTE #2: 9 messages, A seq 16-26 (EXECUTE_TRANSACTION_REQUEST … "
        "EXECUTE_TRANSACTION_RESPONSE)",
        "- EXECUTE #2 / SUBMIT_SIGNATURE #1: POS → SUBMIT_SIGNATURE_REQUEST (A seq 23)",
        "- EXECUTE #2 / SUBMIT_SIGNATURE #1: ← SUBMIT_SIGNATURE_RESPONSE (A seq 24)",
        f"+ EXECUTE #1 / ABORT #1: POS → ABORT_TRANSACTION_REQUEST (B seq {abort_seq})",
    ]
    code, output = cli("diff", "--store", store, session_id, result.session_id, "--format", "json")
    assert code == 1
    report = json.loads(output)
    assert report["counts"] == {"same": 9, "missing": 15, "extra": 1, "changed": 0}
    assert report["differences"][-1] == {
        "change": "extra",
        "operation": first + " / ABORT_TRANSACTION_REQUEST #1",
        "msg_type": "ABORT_TRANSACTION_REQUEST",
        "sender": "client",
        "a_seq": None,
        "b_seq": report["differences"][-1]["b_seq"],
    }
    steps = {(row["step"], row["msg_type"]) for row in report["latencies"]}
    assert ("response", "EXECUTE_TRANSACTION_REQUEST") in steps
    assert ("action_answer", "SUBMIT_SIGNATURE_REQUEST") in steps

    code, output = cli("diff", "--store", store, session_id, session_id)
    assert code == 0 and "no differences in 24 aligned messages" in output
    code, output = cli("diff", "--store", store, session_id, "nope")
    assert code == 2 and output.startswith("p3log: the store has no session 'nope'")


async def test_a_pos_whose_abort_is_refused_and_then_signs(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    """With `--on-unexpected error` the abort is answered with an error and the POS
    signs after all: the abort and its answer are all that is extra."""
    store = tmp_path / "store"
    session_id = fixture_stores.copy("signature", store)
    config = ServeConfig(store, session_id, pacing=Pacing("asap"), on_unexpected="error")
    result, _ = await serve_while(config, abort_instead_of_signing)
    assert result is not None and result.outcome == "complete"
    diff = load_diff(store, session_id, result.session_id)
    aborted = "EXECUTE_TRANSACTION_REQUEST #1 / ABORT_TRANSACTION_REQUEST #1"
    assert [(c.change, c.operation, c.msg_type) for c in diff.changes] == [
        ("extra", aborted, "ABORT_TRANSACTION_REQUEST"),
        ("extra", aborted, "ABORT_TRANSACTION_RESPONSE"),
    ]
    assert diff.same == 24
