"""The recorded sessions in fixtures/sessions/ hold the flows their names promise.

They were recorded by `make fixtures` (a POS script through a real tap to the
simulator); later layers (projections, replay, notebooks) are built and tested on
them, so these tests pin down what each one contains.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from p3log.store.read import open_store
from p3log.store.transfer import export_store, import_jsonl
from p3log.store.verify import verify_store

SESSIONS = Path(__file__).parents[1] / "fixtures" / "sessions"
NAMES = sorted(path.stem for path in SESSIONS.glob("*.jsonl"))


@contextmanager
def imported(name: str, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    import_jsonl(tmp_path / name, SESSIONS / f"{name}.jsonl")
    con = open_store(tmp_path / name)
    try:
        yield con
    finally:
        con.close()


def _final_statuses(con: duckdb.DuckDBPyConnection) -> list[str | None]:
    rows = con.execute(
        "SELECT payload->>'$.executeTransactionResponse.transaction.status' FROM events "
        "WHERE msg_type = 'EXECUTE_TRANSACTION_RESPONSE' ORDER BY seq"
    ).fetchall()
    return [row[0] for row in rows]


def test_there_is_a_session_for_every_pos_script() -> None:
    scripts = sorted(path.stem for path in (SESSIONS.parent / "pos").glob("*.toml"))
    assert scripts == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_a_fixture_imports_verifies_and_exports_unchanged(name: str, tmp_path: Path) -> None:
    import_jsonl(tmp_path / "store", SESSIONS / f"{name}.jsonl")
    assert verify_store(tmp_path / "store").ok
    export_store(tmp_path / "store", "jsonl", tmp_path / "again.jsonl")
    # The fixtures hold records only; an export adds its header and end line around them.
    records = (tmp_path / "again.jsonl").read_bytes().splitlines(keepends=True)[1:-1]
    assert b"".join(records) == (SESSIONS / f"{name}.jsonl").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_no_fixture_holds_the_merchant_secret(name: str) -> None:
    text = (SESSIONS / f"{name}.jsonl").read_text()
    assert "demo-merchant-secret" not in text
    assert "[REDACTED merchantSecret hmac-sha256:" in text


def test_simple_is_an_approved_charge(tmp_path: Path) -> None:
    with imported("simple", tmp_path) as con:
        assert set(_final_statuses(con)) == {"APPROVED"}


def test_decline_carries_its_status_code(tmp_path: Path) -> None:
    with imported("decline", tmp_path) as con:
        (code,) = con.execute(
            "SELECT payload->>'$.executeTransactionResponse.transaction.statusDetails.code' "
            "FROM events WHERE msg_type = 'EXECUTE_TRANSACTION_RESPONSE'"
        ).fetchall()
        assert _final_statuses(con) == ["DECLINED"]
        assert code[0].startswith("DECLINED_")


def test_abort_has_an_accepted_and_a_refused_abort_each_followed_by_a_final_response(
    tmp_path: Path,
) -> None:
    with imported("abort", tmp_path) as con:
        statuses = [
            row[0]
            for row in con.execute(
                "SELECT status FROM events "
                "WHERE msg_type = 'ABORT_TRANSACTION_RESPONSE' ORDER BY seq"
            ).fetchall()
        ]
        assert statuses[0] == "OK"
        assert "ERROR" in statuses
        assert "ABORTED" in _final_statuses(con)
        assert len(_final_statuses(con)) >= len(statuses)


def test_signature_has_the_action_and_both_kinds_of_answer(tmp_path: Path) -> None:
    with imported("signature", tmp_path) as con:
        bodies = [
            json.loads(row[0])["submitSignatureRequest"]
            for row in con.execute(
                "SELECT payload FROM events WHERE msg_type = 'SUBMIT_SIGNATURE_REQUEST'"
            ).fetchall()
        ]
        actions = con.execute(
            "SELECT count(*) FROM events WHERE msg_type = 'EXECUTE_TRANSACTION_ACTION'"
        ).fetchall()[0][0]
    assert actions >= 2
    assert any("signature" in body for body in bodies)
    assert any(body.get("signOnReceipt") is True for body in bodies)


def test_abort_during_action_ends_aborted(tmp_path: Path) -> None:
    with imported("abort_during_action", tmp_path) as con:
        order = [
            row[0]
            for row in con.execute(
                "SELECT msg_type FROM events WHERE kind = 'message' ORDER BY seq"
            ).fetchall()
        ]
        assert _final_statuses(con) == ["ABORTED"]
    action = order.index("EXECUTE_TRANSACTION_ACTION")
    assert order[action + 1] == "ABORT_TRANSACTION_REQUEST"
    assert "SUBMIT_SIGNATURE_REQUEST" not in order


def test_amend_refunds_captures_and_adjusts_a_tip(tmp_path: Path) -> None:
    with imported("amend", tmp_path) as con:
        kinds = {
            row[0]
            for row in con.execute(
                "SELECT payload->>'$.amendTransactionRequest.transactionParameters.type' "
                "FROM events WHERE msg_type = 'AMEND_TRANSACTION_REQUEST'"
            ).fetchall()
        }
        resources = {
            row[0]
            for row in con.execute(
                "SELECT payload->'$.resource' FROM events "
                "WHERE msg_type = 'AMEND_TRANSACTION_REQUEST'"
            ).fetchall()
        }
    assert {"REFUND", "CAPTURE", "TIP_ADJUST"} <= kinds
    assert resources == {"null"}  # amend needs no reader


def test_busy_device_is_refused_to_the_second_pos(tmp_path: Path) -> None:
    with imported("busy_device", tmp_path) as con:
        errors = con.execute(
            "SELECT payload->>'$.error.type' FROM events WHERE status = 'ERROR'"
        ).fetchall()
        sessions = con.execute("SELECT count(DISTINCT session_id) FROM events").fetchall()
    assert ("ACCESSORY_BUSY",) in errors
    assert sessions[0][0] >= 2


def test_server_error_ends_the_execute_with_an_error(tmp_path: Path) -> None:
    with imported("server_error", tmp_path) as con:
        (row,) = con.execute(
            "SELECT status, payload->>'$.error.type' FROM events "
            "WHERE msg_type = 'EXECUTE_TRANSACTION_RESPONSE'"
        ).fetchall()
    assert row == ("ERROR", "SERVER_TIMEOUT")


def test_dropped_connection_leaves_an_execute_without_response(tmp_path: Path) -> None:
    with imported("dropped_connection", tmp_path) as con:
        closes = [
            json.loads(row[0])
            for row in con.execute(
                "SELECT payload FROM events WHERE kind = 'connection_closed' ORDER BY seq"
            ).fetchall()
        ]
        first_session = con.execute("SELECT session_id FROM events WHERE seq = 1").fetchall()[0][0]
        dropped = con.execute(
            "SELECT count(*) FROM events WHERE session_id = ? "
            "AND msg_type = 'EXECUTE_TRANSACTION_RESPONSE'",
            [first_session],
        ).fetchall()[0][0]
        requests = con.execute(
            "SELECT count(*) FROM events WHERE session_id = ? "
            "AND msg_type = 'EXECUTE_TRANSACTION_REQUEST'",
            [first_session],
        ).fetchall()[0][0]
    assert closes[0]["by"] == "server"
    assert requests == dropped + 1
