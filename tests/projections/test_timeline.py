"""The timeline's pieces with plain data: key resolution, short keys, event summaries."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from p3log.projections.observed import Observed
from p3log.projections.rows import TABLE_BY_ROW, Micros, TransactionRow
from p3log.projections.timeline import (
    AmbiguousTransaction,
    UnknownTransaction,
    money,
    resolve_key,
    summarize,
    unique_prefix,
)
from p3log.protocol.dialect import DEFAULT_DIALECT, AbortRules, ActionRules, Dialect
from p3log.store.errors import StoreError
from p3log.store.index import connect

# (key, identifier): a reused tag ("#2"), and an identifier an amend shares.
TRANSACTIONS = [
    ("aaaa:t1", "id-1"),
    ("aaaa:t1#2", "id-2"),
    ("aaaa:t2", "id-3"),
    ("bbbb:t1", "id-3"),
    ("bbbb:x9", None),
]


def _row(seq: int, key: str, identifier: str | None) -> TransactionRow:
    session, _, tag = key.partition(":")
    return TransactionRow(
        transaction_key=key,
        session_id=session,
        tag=tag,
        operation="execute",
        resource="devices/a",
        requested_at=Micros(1_000_000 * seq),
        completed_at=None,
        outcome="INCOMPLETE",
        transaction_identifier=identifier,
        amount=Decimal("1.0000"),
        currency="EUR",
        abort_requested=False,
        update_count=0,
        action_count=0,
        duration_ms=None,
        transaction_type="CHARGE",
        status_details_code=None,
        error_type=None,
        referenced_transaction_identifier=None,
        request_seq=seq,
        response_seq=None,
    )


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(None)
    table = TABLE_BY_ROW[TransactionRow]
    connection.execute(table.ddl())
    rows = table.arrow_table([_row(seq, *pair) for seq, pair in enumerate(TRANSACTIONS, 1)])
    connection.register("rows", rows)
    connection.execute("INSERT INTO transactions SELECT * FROM rows")
    yield connection
    connection.close()


def test_a_key_resolves_exactly_by_prefix_or_by_identifier(con) -> None:
    assert resolve_key(con, "aaaa:t1") == "aaaa:t1"  # exact, though "aaaa:t1#2" extends it
    assert resolve_key(con, "aaaa:t1#") == "aaaa:t1#2"
    assert resolve_key(con, "bbbb:x") == "bbbb:x9"
    assert resolve_key(con, "id-2") == "aaaa:t1#2"


def test_several_matches_are_ambiguous_and_name_them(con) -> None:
    with pytest.raises(AmbiguousTransaction) as caught:
        resolve_key(con, "id-3")
    assert caught.value.candidates == ("aaaa:t2 (INCOMPLETE)", "bbbb:t1 (INCOMPLETE)")
    assert str(caught.value) == (
        "'id-3' matches 2 transactions: aaaa:t2 (INCOMPLETE), bbbb:t1 (INCOMPLETE); "
        "name one by its key"
    )
    with pytest.raises(AmbiguousTransaction, match=r"matches 5 transactions: [^;]*\)(; name)"):
        resolve_key(con, "")


def test_at_most_a_few_candidates_are_listed(con) -> None:
    con.executemany(
        "INSERT INTO transactions SELECT * REPLACE (? AS transaction_key, ? AS request_seq) "
        "FROM transactions WHERE transaction_key = 'bbbb:x9'",
        [[f"cccc:{n}", 100 + n] for n in range(8)],
    )
    with pytest.raises(AmbiguousTransaction) as caught:
        resolve_key(con, "cccc:")
    assert len(caught.value.candidates) == 5
    assert str(caught.value).endswith("and 3 more; name one by its key")


def test_nothing_matching_is_unknown_and_a_store_error(con) -> None:
    with pytest.raises(UnknownTransaction, match="no transaction matches 'zzzz'") as caught:
        resolve_key(con, "zzzz")
    assert isinstance(caught.value, StoreError)  # the CLI's one-line errors


def test_unique_prefix_is_the_shortest_that_resolves(con) -> None:
    keys = sorted(key for key, _ in TRANSACTIONS)
    for index, key in enumerate(keys):
        neighbours = keys[index - 1 : index] + keys[index + 1 : index + 2]
        short = unique_prefix(key, neighbours)
        assert resolve_key(con, short) == key
        if short != key:  # and one character less is not enough
            with contextlib.suppress(AmbiguousTransaction):
                assert resolve_key(con, short[:-1]) != key
    assert unique_prefix("aaaa:t1", ["aaaa:t1#2"]) == "aaaa:t1"
    assert unique_prefix("aaaa:t2", ["aaaa:t1#2", "bbbb:t1"]) == "aaaa:t2"
    assert unique_prefix("bbbb:x9", ["bbbb:t1", None]) == "bbbb:x"
    assert unique_prefix("bbbb:x9", [None, None], minimum=6) == "bbbb:x"


def _event(
    sender: str,
    msg_type: str,
    body: dict[str, Any] | None = None,
    *,
    status: str | None = None,
    dialect: Dialect = DEFAULT_DIALECT,
    **envelope: Any,
) -> Observed:
    words = msg_type.lower().split("_")
    payload: dict[str, Any] = {"type": msg_type, "tag": "t1", **envelope}
    payload[words[0] + "".join(word.capitalize() for word in words[1:])] = body or {}
    if status is not None:
        payload["status"] = status
    return Observed.of_message(1, "s1", sender, "message", 0, json.dumps(payload), None, dialect)


@pytest.mark.parametrize(
    ("event", "summary"),
    [
        (
            _event(
                "client",
                "EXECUTE_TRANSACTION_REQUEST",
                {"transactionParameters": {"amount": 90.4, "currency": "EUR", "type": "CHARGE"}},
            ),
            "CHARGE · 90.40 EUR",
        ),
        (
            _event(
                "client",
                "AMEND_TRANSACTION_REQUEST",
                {
                    "transactionParameters": {
                        "type": "REFUND",
                        "referencedTransactionIdentifier": "abc",
                    }
                },
            ),
            "REFUND · of abc",
        ),
        (
            _event(
                "server",
                "EXECUTE_TRANSACTION_UPDATE",
                {"state": "PROCESSING", "stateDetails": "PROCESSING_ACTION_REQUIRED"},
                status="OK",
            ),
            "PROCESSING_ACTION_REQUIRED · not abortable",
        ),
        (
            _event(
                "server",
                "EXECUTE_TRANSACTION_UPDATE",
                {
                    "state": "WAITING_FOR_CARD_PRESENTATION",
                    "stateDetails": "PROCESSING_WAITING_FOR_CARD_PRESENTATION",
                    "abortable": True,
                },
                status="OK",
            ),
            "WAITING_FOR_CARD_PRESENTATION / PROCESSING_WAITING_FOR_CARD_PRESENTATION · abortable",
        ),
        (
            _event("server", "EXECUTE_TRANSACTION_ACTION", {"action": "SIGNATURE"}, status="OK"),
            "action SIGNATURE",
        ),
        (
            _event(
                "server",
                "EXECUTE_TRANSACTION_RESPONSE",
                {"transaction": {"status": "DECLINED"}},
                status="OK",
            ),
            "OK · DECLINED",
        ),
        (
            _event("server", "EXECUTE_TRANSACTION_RESPONSE", {}, status="OK"),
            "OK · UNKNOWN",
        ),
        (
            _event(
                "server",
                "ABORT_TRANSACTION_RESPONSE",
                status="ERROR",
                error={"type": "TRANSACTION_NO_LONGER_ABORTABLE", "message": "too late"},
            ),
            "ERROR · TRANSACTION_NO_LONGER_ABORTABLE",
        ),
        (_event("client", "SUBMIT_SIGNATURE_REQUEST", {"signature": "x"}), "signature"),
        (
            _event("client", "SUBMIT_SIGNATURE_REQUEST", {"signOnReceipt": True}),
            "sign on receipt",
        ),
        (_event("client", "ABORT_TRANSACTION_REQUEST"), ""),
    ],
)
def test_summaries(event: Observed, summary: str) -> None:
    assert summarize(event) == summary


def test_lifecycle_summaries_read_the_taps_record() -> None:
    closed = {"by": "server", "code": 1011, "reason": "drop"}
    event = Observed.of_message(9, "s1", "tap", "connection_closed", 0, json.dumps(closed))
    assert summarize(event, closed) == "closed by server · 1011 · drop"
    assert summarize(event) == "closed"
    opened = Observed.of_message(1, "s1", "tap", "upstream_connected", 0, '{"url": "ws://x/"}')
    assert summarize(opened, {"url": "ws://x/"}) == "upstream connected"


def test_summaries_follow_the_dialect() -> None:
    dialect = Dialect(
        abort=AbortRules(correlation="body_tag", tag_key="txTag"),
        action=ActionRules(action_key="what"),
    )
    action = _event(
        "server", "EXECUTE_TRANSACTION_ACTION", {"what": "SIGNATURE"}, status="OK", dialect=dialect
    )
    assert summarize(action) == "action SIGNATURE"
    abort = _event("client", "ABORT_TRANSACTION_REQUEST", {"txTag": "t0"}, dialect=dialect)
    assert summarize(abort) == "aborts tag t0"


def test_malformed_bytes_say_why() -> None:
    event = Observed.of_message(3, "s1", "client", "malformed", 0, "{nope", "bad JSON")
    assert summarize(event) == "malformed: bad JSON"


def test_money() -> None:
    assert money(Decimal("90.0400"), "EUR") == "90.04 EUR"
    assert money(Decimal("20.0000"), "EUR") == "20.00 EUR"
    assert money(Decimal("1.2345"), None) == "1.2345"
    assert money(None, "EUR") is None
