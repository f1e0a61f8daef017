"""The projections of the recorded sessions in fixtures/sessions/, checked by hand.

Each small fixture is imported into a fresh store and every row of `transactions`,
`abort_windows`, `action_waits`, `aborts` and `protocol_findings` is compared field
by field. The categorical facts (outcome, amounts, counts, answers, rules, which
event opens and closes what) were read off the fixture's events and are written
here; times and durations are taken from the events' `recorded_at_us` in the JSONL,
so that a duration is asserted as the difference of two recorded times.

A transaction is named by the seq of its request: rows of the other tables show
`transaction` = the `request_seq` of the transaction their key points at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from p3log.projections.opening import open_store
from p3log.store.transfer import import_jsonl

SESSIONS = Path(__file__).parents[2] / "fixtures" / "sessions"
NAMES = sorted(path.stem for path in SESSIONS.glob("*.jsonl"))
USB = "devices/usbReader"

# The seq of the request of the transaction a row's `transaction_key` names.
_TRANSACTION = (
    "(SELECT t.request_seq FROM transactions t WHERE t.transaction_key = r.transaction_key)"
)
TRANSACTIONS = """
    SELECT request_seq, response_seq, session_id, tag, operation, resource,
           epoch_us(requested_at) AS requested_at, epoch_us(completed_at) AS completed_at,
           duration_ms, outcome, transaction_identifier, amount, currency, transaction_type,
           status_details_code, error_type, referenced_transaction_identifier,
           abort_requested, update_count, action_count
    FROM transactions ORDER BY request_seq
"""
ABORT_WINDOWS = f"""
    SELECT {_TRANSACTION} AS transaction, session_id, opened_seq, closed_seq,
           epoch_us(opened_at) AS opened_at, epoch_us(closed_at) AS closed_at, duration_ms
    FROM abort_windows r ORDER BY opened_seq
"""
ACTION_WAITS = f"""
    SELECT {_TRANSACTION} AS transaction, session_id, action, asked_seq, answered_seq,
           epoch_us(asked_at) AS asked_at, epoch_us(answered_at) AS answered_at, wait_ms,
           answer, attempts
    FROM action_waits r ORDER BY asked_seq
"""
ABORTS = f"""
    SELECT {_TRANSACTION} AS transaction, session_id, tag, request_seq, response_seq,
           epoch_us(requested_at) AS requested_at, epoch_us(answered_at) AS answered_at,
           was_abortable, response_status, error_type
    FROM aborts r ORDER BY request_seq
"""
FINDINGS = f"""
    SELECT {_TRANSACTION} AS transaction, session_id, seq, rule
    FROM protocol_findings r ORDER BY seq, rule
"""


class Fixture:
    """A recorded session file, read as plain JSON: the source of expected times."""

    def __init__(self, name: str) -> None:
        lines = (SESSIONS / f"{name}.jsonl").read_text().splitlines()
        self.events: dict[int, dict[str, Any]] = {
            event["seq"]: event for event in map(json.loads, lines)
        }

    def at(self, seq: int | None) -> int | None:
        return None if seq is None else int(self.events[seq]["recorded_at_us"])

    def ms(self, start: int, end: int | None) -> float | None:
        """The time from event `start` to event `end`, in milliseconds."""
        end_us, start_us = self.at(end), self.at(start)
        return None if end_us is None or start_us is None else (end_us - start_us) / 1000

    def session(self, seq: int) -> str:
        return str(self.events[seq]["session_id"])

    def tag(self, seq: int) -> str:
        return str(self.events[seq]["tag"])

    # --- expected rows: the categorical facts are the arguments -----------------------

    def execute(
        self,
        request: int,
        response: int | None,
        *,
        outcome: str,
        identifier: str | None,
        amount: str,
        updates: int,
        status_code: str | None,
        actions: int = 0,
        abort_requested: bool = False,
        error_type: str | None = None,
        currency: str = "EUR",
    ) -> dict[str, Any]:
        return self._transaction(
            request,
            response,
            operation="execute",
            resource=USB,
            outcome=outcome,
            transaction_identifier=identifier,
            amount=Decimal(amount),
            currency=currency,
            transaction_type="CHARGE",
            status_details_code=status_code,
            error_type=error_type,
            referenced_transaction_identifier=None,
            abort_requested=abort_requested,
            update_count=updates,
            action_count=actions,
        )

    def amend(
        self,
        request: int,
        response: int,
        *,
        transaction_type: str,
        referenced: str,
        identifier: str,
        amount: str,
        updates: int,
    ) -> dict[str, Any]:
        return self._transaction(
            request,
            response,
            operation="amend",
            resource=None,
            outcome="APPROVED",
            transaction_identifier=identifier,
            amount=Decimal(amount),
            currency="EUR",
            transaction_type=transaction_type,
            status_details_code="APPROVED",
            error_type=None,
            referenced_transaction_identifier=referenced,
            abort_requested=False,
            update_count=updates,
            action_count=0,
        )

    def _transaction(self, request: int, response: int | None, **facts: Any) -> dict[str, Any]:
        return {
            "request_seq": request,
            "response_seq": response,
            "session_id": self.session(request),
            "tag": self.tag(request),
            "requested_at": self.at(request),
            "completed_at": self.at(response),
            "duration_ms": self.ms(request, response),
            **facts,
        }

    def window(self, transaction: int, opened: int, closed: int | None) -> dict[str, Any]:
        return {
            "transaction": transaction,
            "session_id": self.session(transaction),
            "opened_seq": opened,
            "closed_seq": closed,
            "opened_at": self.at(opened),
            "closed_at": self.at(closed),
            "duration_ms": self.ms(opened, closed),
        }

    def action_wait(
        self, transaction: int, asked: int, answered: int | None, answer: str | None
    ) -> dict[str, Any]:
        return {
            "transaction": transaction,
            "session_id": self.session(transaction),
            "action": "SIGNATURE",
            "asked_seq": asked,
            "answered_seq": answered,
            "asked_at": self.at(asked),
            "answered_at": self.at(answered),
            "wait_ms": self.ms(asked, answered),
            "answer": answer,
            "attempts": 1 if answered is not None else 0,
        }

    def abort(
        self,
        transaction: int | None,
        request: int,
        response: int,
        *,
        was_abortable: bool,
        error_type: str | None = None,
    ) -> dict[str, Any]:
        return {
            "transaction": transaction,
            "session_id": self.session(request),
            "tag": self.tag(request),
            "request_seq": request,
            "response_seq": response,
            "requested_at": self.at(request),
            "answered_at": self.at(response),
            "was_abortable": was_abortable,
            "response_status": "OK" if error_type is None else "ERROR",
            "error_type": error_type,
        }

    def finding(self, seq: int, rule: str, transaction: int | None) -> dict[str, Any]:
        return {
            "transaction": transaction,
            "session_id": self.session(seq),
            "seq": seq,
            "rule": rule,
        }


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


Projected = Callable[[str], tuple[Fixture, duckdb.DuckDBPyConnection]]


@pytest.fixture(scope="module")
def projected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Projected]:
    """A fixture imported into a fresh store (once per module): its expected times
    and a read-only connection to its projections."""
    loaded: dict[str, tuple[Fixture, duckdb.DuckDBPyConnection]] = {}

    def load(name: str) -> tuple[Fixture, duckdb.DuckDBPyConnection]:
        if name not in loaded:
            root = tmp_path_factory.mktemp("stores") / name
            import_jsonl(root, SESSIONS / f"{name}.jsonl")
            loaded[name] = Fixture(name), open_store(root)
        return loaded[name]

    yield load
    for _, con in loaded.values():
        con.close()


# --- the small fixtures, row by row ----------------------------------------------------


def test_simple_is_two_approved_charges(projected: Projected) -> None:
    f, con = projected("simple")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            11,
            outcome="APPROVED",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="12.5",
            updates=5,
            status_code="APPROVED",
        ),
        f.execute(
            12,
            20,
            outcome="APPROVED",
            identifier="ac7122087c679917df5b136316bccb30",
            amount="7.8",
            currency="CHF",
            updates=7,
            status_code="APPROVED",
        ),
    ]
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 9), f.window(12, 15, 16)]
    assert rows(con, ACTION_WAITS) == []
    assert rows(con, ABORTS) == []
    assert rows(con, FINDINGS) == []


def test_simple_states_last_until_the_next_update_or_the_response(projected: Projected) -> None:
    f, con = projected("simple")
    states = rows(
        con,
        "SELECT seq, state, abortable, epoch_us(entered_at) AS entered_at, time_in_state_ms "
        "FROM transaction_states WHERE seq < 12 ORDER BY seq",
    )

    assert states == [
        {
            "seq": 6,
            "state": "CONNECTING_TO_ACCESSORY",
            "abortable": False,
            "entered_at": f.at(6),
            "time_in_state_ms": f.ms(6, 7),
        },
        {
            "seq": 7,
            "state": "INITIALIZING_TRANSACTION",
            "abortable": False,
            "entered_at": f.at(7),
            "time_in_state_ms": f.ms(7, 8),
        },
        {
            "seq": 8,
            "state": "WAITING_FOR_CARD_PRESENTATION",
            "abortable": True,
            "entered_at": f.at(8),
            "time_in_state_ms": f.ms(8, 9),
        },
        {
            "seq": 9,
            "state": "PROCESSING",
            "abortable": False,
            "entered_at": f.at(9),
            "time_in_state_ms": f.ms(9, 10),
        },
        {
            "seq": 10,
            "state": "APPROVED",
            "abortable": False,
            "entered_at": f.at(10),
            "time_in_state_ms": f.ms(10, 11),
        },
    ]


def test_decline_is_one_declined_charge(projected: Projected) -> None:
    f, con = projected("decline")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            11,
            outcome="DECLINED",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="90.01",
            updates=5,
            status_code="DECLINED_INSUFFICIENT_FUNDS",
        )
    ]
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 9)]
    assert rows(con, ACTION_WAITS) == []
    assert rows(con, ABORTS) == []
    assert rows(con, FINDINGS) == []


def test_server_error_is_an_error_outcome_with_its_type(projected: Projected) -> None:
    f, con = projected("server_error")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            11,
            outcome="ERROR",
            error_type="SERVER_TIMEOUT",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="90.03",
            updates=5,
            status_code="ERROR_SERVER_TIMEOUT",
        )
    ]
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 9)]
    assert rows(con, ACTION_WAITS) == []
    assert rows(con, ABORTS) == []
    assert rows(con, FINDINGS) == []


def test_abort_has_an_accepted_abort_and_one_sent_when_not_abortable(
    projected: Projected,
) -> None:
    f, con = projected("abort")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            12,
            outcome="ABORTED",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="90.04",
            updates=4,
            abort_requested=True,
            status_code="ABORTED_MERCHANT_ABORTED",
        ),
        f.execute(
            13,
            25,
            outcome="APPROVED",
            identifier="ac7122087c679917df5b136316bccb30",
            amount="90.02",
            updates=6,
            actions=1,
            abort_requested=True,
            status_code="APPROVED",
        ),
    ]
    # The first window closes at the ABORTED update, the second at PROCESSING.
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 11), f.window(13, 16, 17)]
    assert rows(con, ACTION_WAITS) == [f.action_wait(13, 21, 22, "signature")]
    assert rows(con, ABORTS) == [
        f.abort(5, 9, 10, was_abortable=True),
        f.abort(13, 18, 19, was_abortable=False, error_type="TRANSACTION_NO_LONGER_ABORTABLE"),
    ]
    assert rows(con, FINDINGS) == [f.finding(18, "abort_not_abortable", 13)]


def test_abort_during_action_answers_the_action_with_the_abort(projected: Projected) -> None:
    f, con = projected("abort_during_action")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            15,
            outcome="ABORTED",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="90.02",
            updates=6,
            actions=1,
            abort_requested=True,
            status_code="ABORTED_MERCHANT_ABORTED",
        )
    ]
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 9)]
    assert rows(con, ACTION_WAITS) == [f.action_wait(5, 11, 12, "abort")]
    # The latest update (seq 10) was not abortable, but the action was waiting.
    assert rows(con, ABORTS) == [f.abort(5, 12, 13, was_abortable=True)]
    assert rows(con, FINDINGS) == []


def test_signature_is_answered_once_with_an_image_and_once_on_the_receipt(
    projected: Projected,
) -> None:
    f, con = projected("signature")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            15,
            outcome="APPROVED",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="90.02",
            updates=6,
            actions=1,
            status_code="APPROVED",
        ),
        f.execute(
            16,
            26,
            outcome="APPROVED",
            identifier="ac7122087c679917df5b136316bccb30",
            amount="90.02",
            updates=6,
            actions=1,
            status_code="APPROVED",
        ),
    ]
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 9), f.window(16, 19, 20)]
    assert rows(con, ACTION_WAITS) == [
        f.action_wait(5, 11, 12, "signature"),
        f.action_wait(16, 22, 23, "on_receipt"),
    ]
    assert rows(con, ABORTS) == []
    assert rows(con, FINDINGS) == []


def test_amend_refunds_captures_and_adjusts_a_tip_of_three_charges(projected: Projected) -> None:
    f, con = projected("amend")
    first, preauthorised, tipped = (
        "1d245aa41b96ace682c118d84088cbdf",
        "c9639ec784b2f8f2ca0041ab6e6e0e22",
        "fdee2aa3e94044dcedca74af13c61963",
    )

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            11,
            outcome="APPROVED",
            identifier=first,
            amount="20",
            updates=5,
            status_code="APPROVED",
        ),
        f.amend(
            12,
            15,
            transaction_type="REFUND",
            referenced=first,
            identifier="cdc2d4b39ff648ce1ca031087ea7cdc5",  # the refund's own identifier
            amount="5",
            updates=2,
        ),
        f.execute(
            16,
            24,
            outcome="APPROVED",
            identifier=preauthorised,
            amount="40",
            updates=7,
            status_code="APPROVED",
        ),
        # The capture names no amount: it is the captured transaction's.
        f.amend(
            25,
            28,
            transaction_type="CAPTURE",
            referenced=preauthorised,
            identifier=preauthorised,
            amount="40",
            updates=2,
        ),
        f.execute(
            29,
            39,
            outcome="APPROVED",
            identifier=tipped,
            amount="10",
            updates=6,
            actions=1,
            status_code="APPROVED",
        ),
        # A tip adjust's amount is the tip it requests.
        f.amend(
            40,
            43,
            transaction_type="TIP_ADJUST",
            referenced=tipped,
            identifier=tipped,
            amount="1.5",
            updates=2,
        ),
    ]
    assert rows(con, ABORT_WINDOWS) == [
        f.window(5, 8, 9),
        f.window(16, 19, 20),
        f.window(29, 32, 33),
    ]
    assert rows(con, ACTION_WAITS) == [f.action_wait(29, 35, 36, "signature")]
    assert rows(con, ABORTS) == []
    assert rows(con, FINDINGS) == []


def test_busy_device_is_refused_to_a_second_session_without_a_finding(
    projected: Projected,
) -> None:
    f, con = projected("busy_device")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            22,
            outcome="APPROVED",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="90.02",
            updates=6,
            actions=1,
            status_code="APPROVED",
        ),
        f.execute(
            16,
            17,
            outcome="ERROR",
            error_type="ACCESSORY_BUSY",
            identifier=None,
            amount="5",
            updates=0,
            status_code=None,
        ),
    ]
    assert f.session(5) != f.session(16)
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 9)]
    # The shopper signs while the other session comes and goes.
    assert rows(con, ACTION_WAITS) == [f.action_wait(5, 11, 19, "signature")]
    assert rows(con, ABORTS) == []
    assert rows(con, FINDINGS) == []


def test_dropped_connection_leaves_an_incomplete_transaction_missing_its_response(
    projected: Projected,
) -> None:
    f, con = projected("dropped_connection")

    assert rows(con, TRANSACTIONS) == [
        f.execute(
            5,
            None,
            outcome="INCOMPLETE",
            identifier="1d245aa41b96ace682c118d84088cbdf",
            amount="90.05",
            updates=4,
            status_code=None,
        ),
        f.execute(
            15,
            21,
            outcome="APPROVED",
            identifier="ac7122087c679917df5b136316bccb30",
            amount="9.99",
            updates=5,
            status_code="APPROVED",
        ),
    ]
    assert rows(con, ABORT_WINDOWS) == [f.window(5, 8, 9), f.window(15, 18, 19)]
    assert rows(con, ACTION_WAITS) == []
    assert rows(con, ABORTS) == []
    assert rows(con, FINDINGS) == [f.finding(10, "missing_response", 5)]
    (last_state,) = rows(
        con, "SELECT time_in_state_ms FROM transaction_states WHERE seq = 9"
    )  # PROCESSING until the connection dropped
    assert last_state == {"time_in_state_ms": f.ms(9, 10)}


# --- the demo: the whole loop ----------------------------------------------------------


def test_demo_outcomes_answers_and_findings(projected: Projected) -> None:
    f, con = projected("demo")

    outcomes = rows(
        con,
        "SELECT operation, outcome, count(*) AS n FROM transactions GROUP BY ALL ORDER BY ALL",
    )
    assert outcomes == [
        {"operation": "amend", "outcome": "APPROVED", "n": 3},
        {"operation": "execute", "outcome": "ABORTED", "n": 2},
        {"operation": "execute", "outcome": "APPROVED", "n": 7},
        {"operation": "execute", "outcome": "DECLINED", "n": 1},
        {"operation": "execute", "outcome": "ERROR", "n": 2},
        {"operation": "execute", "outcome": "INCOMPLETE", "n": 1},
    ]
    errors = rows(
        con, "SELECT request_seq, error_type FROM transactions WHERE outcome = 'ERROR' ORDER BY 1"
    )
    assert errors == [
        {"request_seq": 103, "error_type": "ACCESSORY_BUSY"},
        {"request_seq": 110, "error_type": "SERVER_TIMEOUT"},
    ]
    answers = rows(con, "SELECT asked_seq, answered_seq, answer FROM action_waits ORDER BY 1")
    assert answers == [
        {"asked_seq": 30, "answered_seq": 31, "answer": "signature"},
        {"asked_seq": 41, "answered_seq": 42, "answer": "on_receipt"},
        {"asked_seq": 52, "answered_seq": 53, "answer": "abort"},
        {"asked_seq": 83, "answered_seq": 84, "answer": "signature"},
        {"asked_seq": 98, "answered_seq": 106, "answer": "signature"},
    ]
    aborts = rows(con, f"SELECT {_TRANSACTION} AS transaction, was_abortable FROM aborts r")
    assert sorted(aborts, key=lambda row: row["transaction"]) == [
        {"transaction": 16, "was_abortable": True},
        {"transaction": 46, "was_abortable": True},
    ]
    assert rows(con, FINDINGS) == [f.finding(122, "missing_response", 117)]


# --- every fixture: durations are differences of recorded times -------------------------

# (table, start seq, end seq, start time, end time, duration) of every timed row.
TIMED = [
    ("transactions", "request_seq", "response_seq", "requested_at", "completed_at", "duration_ms"),
    ("abort_windows", "opened_seq", "closed_seq", "opened_at", "closed_at", "duration_ms"),
    ("action_waits", "asked_seq", "answered_seq", "asked_at", "answered_at", "wait_ms"),
    ("latencies", "request_seq", "step_seq", "requested_at", "step_at", "latency_ms"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("table", "start_seq", "end_seq", "start_at", "end_at", "duration"),
    TIMED,
    ids=[timed[0] for timed in TIMED],
)
def test_every_duration_is_the_difference_of_the_recorded_times_at_its_seqs(
    projected: Projected,
    name: str,
    table: str,
    start_seq: str,
    end_seq: str,
    start_at: str,
    end_at: str,
    duration: str,
) -> None:
    _, con = projected(name)

    wrong = con.execute(
        f"""
        SELECT r.{start_seq}, r.{end_seq}, r.{duration}
        FROM {table} r
        LEFT JOIN events s ON s.seq = r.{start_seq}
        LEFT JOIN events e ON e.seq = r.{end_seq}
        WHERE s.seq IS NULL
           OR r.{start_at} IS DISTINCT FROM s.recorded_at
           OR r.{end_at} IS DISTINCT FROM e.recorded_at
           OR r.{duration} IS DISTINCT FROM
              (epoch_us(e.recorded_at) - epoch_us(s.recorded_at)) / 1000
        """
    ).fetchall()
    (checked,) = con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)

    assert wrong == []
    assert checked > 0 or table == "action_waits"


@pytest.mark.parametrize("name", NAMES)
def test_every_state_lasts_until_its_transactions_next_update_response_or_close(
    projected: Projected, name: str
) -> None:
    _, con = projected(name)

    wrong = con.execute(
        """
        WITH ends AS (  -- what may end a state: an update, the response, the close
            SELECT transaction_key, seq FROM transaction_states
            UNION ALL
            SELECT transaction_key, response_seq FROM transactions
            UNION ALL
            SELECT t.transaction_key, e.seq FROM transactions t
            JOIN events e ON e.session_id = t.session_id AND e.kind = 'connection_closed'
        ), left_at AS (
            SELECT s.seq, min(ends.seq) AS end_seq
            FROM transaction_states s
            LEFT JOIN ends ON ends.transaction_key = s.transaction_key AND ends.seq > s.seq
            GROUP BY s.seq
        )
        SELECT s.seq, s.time_in_state_ms
        FROM transaction_states s
        JOIN left_at USING (seq)
        LEFT JOIN events entered ON entered.seq = s.seq
        LEFT JOIN events e ON e.seq = left_at.end_seq
        WHERE s.entered_at IS DISTINCT FROM entered.recorded_at
           OR s.time_in_state_ms IS DISTINCT FROM
              (epoch_us(e.recorded_at) - epoch_us(entered.recorded_at)) / 1000
        """
    ).fetchall()

    assert wrong == []


@pytest.mark.parametrize("name", NAMES)
def test_every_latency_splits_into_server_and_pos_time(projected: Projected, name: str) -> None:
    _, con = projected(name)

    split_wrong = con.execute(
        "SELECT request_seq, step FROM latencies "
        "WHERE abs(server_ms + pos_ms - latency_ms) > 1e-9 OR pos_ms < 0"
    ).fetchall()
    # The POS's share of a transaction is the time its actions waited for an answer.
    pos_wrong = con.execute(
        """
        SELECT l.request_seq, l.pos_ms, coalesce(sum(a.wait_ms), 0) AS waited
        FROM latencies l
        JOIN transactions t ON t.request_seq = l.request_seq
        LEFT JOIN action_waits a ON a.transaction_key = t.transaction_key
        WHERE l.step = 'response'
        GROUP BY l.request_seq, l.pos_ms
        HAVING abs(l.pos_ms - coalesce(sum(a.wait_ms), 0)) > 1e-9
        """
    ).fetchall()

    assert split_wrong == []
    assert pos_wrong == []
