"""The facts the fold reads are the same whether DuckDB or Python reads them."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from p3log.projections.facts import FACT_NAMES, read_facts
from p3log.projections.observed import Observed, observed_query
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect, dialect_from_dict
from p3log.store.index import create_schema

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sessions"
ODD_DIALECT = dialect_from_dict(
    {
        "abort": {"request_type": "CANCEL_REQUEST", "correlation": "body_tag", "tag_key": "of"},
        "action": {"action_key": "kind"},
        "signature": {"on_receipt_key": "paper"},
        "error": {"type_key": "code"},
    }
)


def _facts_in_duckdb(payloads: list[str], dialect: Dialect) -> list[list[str | None]]:
    con = duckdb.connect()
    create_schema(con)
    for seq, payload in enumerate(payloads, 1):
        envelope = json.loads(payload)
        con.execute(
            "INSERT INTO event_log (seq, session_id, sender, kind, msg_type, recorded_at, "
            "mono_ns, payload, redaction_policy, redactions, prev_hash, hash) "
            "VALUES (?, 's', 'server', 'message', ?, now(), 0, ?, 'p', [], '', '')",
            [seq, envelope.get("type"), payload],
        )
    rows = con.sql(observed_query(dialect, "events")).fetchall()
    return [list(Observed(*row)[len(Observed._fields) - len(FACT_NAMES) :]) for row in rows]


def _facts_in_python(payloads: list[str], dialect: Dialect) -> list[list[str | None]]:
    facts = []
    for payload in payloads:
        envelope = json.loads(payload)
        facts.append(read_facts(envelope.get("type"), envelope, dialect))
    return facts


def test_duckdb_and_python_read_the_same_facts_from_every_recorded_message() -> None:
    payloads = [
        record["payload"]
        for path in sorted(FIXTURES.glob("*.jsonl"))
        for record in map(json.loads, path.read_text().splitlines())
        if record["kind"] == "message"
    ]
    in_duckdb = _facts_in_duckdb(payloads, DEFAULT_DIALECT)
    assert in_duckdb == _facts_in_python(payloads, DEFAULT_DIALECT)
    assert sum(value is not None for facts in in_duckdb for value in facts) > 500


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(min_value=-1e6, max_value=1e6).map(lambda f: round(f, 2))
    # Printable text: DuckDB and orjson escape control characters inside an object
    # in different case (\u001F, \u001f); no fact the fold reads is such an object.
    | st.text(st.characters(min_codepoint=32, exclude_categories=("Cs",)), max_size=8),
    lambda inner: st.dictionaries(st.sampled_from(["a", "code", "status"]), inner, max_size=2),
    max_leaves=4,
)
message_types = st.sampled_from(
    [
        "EXECUTE_TRANSACTION_REQUEST",
        "EXECUTE_TRANSACTION_UPDATE",
        "EXECUTE_TRANSACTION_ACTION",
        "EXECUTE_TRANSACTION_RESPONSE",
        "AMEND_TRANSACTION_RESPONSE",
        "SUBMIT_SIGNATURE_REQUEST",
        "CANCEL_REQUEST",
        "ABORT_TRANSACTION_RESPONSE",
        "LOGIN_MERCHANT_RESPONSE",
    ]
)
keys = st.sampled_from(
    [
        "state",
        "stateDetails",
        "abortable",
        "action",
        "kind",
        "signOnReceipt",
        "paper",
        "of",
        "amount",
        "currency",
        "type",
        "identifier",
        "status",
    ]
)


@st.composite
def messages(draw: st.DrawFn) -> str:
    msg_type = draw(message_types)
    body: dict[str, Any] = draw(st.dictionaries(keys, json_values, max_size=4))
    body["transaction"] = draw(st.dictionaries(keys, json_values, max_size=4))
    body["transactionParameters"] = draw(st.dictionaries(keys, json_values, max_size=3))
    body_key = "".join(
        part if i == 0 else part.capitalize() for i, part in enumerate(msg_type.lower().split("_"))
    )
    envelope: dict[str, Any] = {"type": msg_type, body_key: body}
    if draw(st.booleans()):
        envelope["error"] = draw(st.dictionaries(st.sampled_from(["type", "code"]), json_values))
    return json.dumps(envelope)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(messages(), min_size=1, max_size=6), st.sampled_from([DEFAULT_DIALECT, ODD_DIALECT])
)
def test_duckdb_and_python_read_the_same_facts_from_any_message(
    payloads: list[str], dialect: Dialect
) -> None:
    assert _comparable(_facts_in_duckdb(payloads, dialect)) == _comparable(
        _facts_in_python(payloads, dialect)
    )


def _comparable(rows: list[list[str | None]]) -> list[list[object]]:
    """Numbers by value: the fold reads numeric facts only as amounts, and DuckDB and
    Python print large doubles differently (1e16 as 10000000000000000.0 or 1e+16)."""
    return [[_number_or_text(value) for value in row] for row in rows]


def _number_or_text(value: str | None) -> object:
    try:
        return Decimal(value) if value is not None else None
    except InvalidOperation:
        return value
