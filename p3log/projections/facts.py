"""The few body fields the fold reads, defined once and read by DuckDB or Python.

Parsing every payload in Python would cost more than the whole fold (about 6 µs
per message with orjson), so the rebuild and the index follower let DuckDB pull
these fields out, vectorised and in C++, in the query that reads the events
(`facts_sql`). Tests and plain-data callers build the same values from a parsed
message (`read_facts`). Both renderings come from the one table below; a test
checks that they agree.

Every fact is text, as DuckDB's `json_extract_string` gives it: strings as they
are, `true`/`false`, numbers in their shortest form, objects as compact JSON. (The
two renderings print very large doubles differently, 1e16 as `1e+16` or as
`10000000000000000.0`; the fold reads numbers only as amounts, by value.)
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from p3log.protocol.dialect import Dialect
from p3log.protocol.model import MessageType, body_key

M = MessageType
_REQUESTS = frozenset({M.EXECUTE_TRANSACTION_REQUEST.value, M.AMEND_TRANSACTION_REQUEST.value})
_UPDATES = frozenset({M.EXECUTE_TRANSACTION_UPDATE.value, M.AMEND_TRANSACTION_UPDATE.value})
_RESPONSES = frozenset({M.EXECUTE_TRANSACTION_RESPONSE.value, M.AMEND_TRANSACTION_RESPONSE.value})
_ACTIONS = frozenset({M.EXECUTE_TRANSACTION_ACTION.value})
_CARRY_TRANSACTION = _UPDATES | _RESPONSES | _ACTIONS


# A path no P3 message has: the slot of a fact a message type does not carry.
_NOTHING = "'$.\"p3log: not carried\"'"


@attrs.frozen
class Fact:
    """`name` is read from messages of `types`, at `path` below the message's body
    (or below the envelope, with `in_envelope`)."""

    name: str
    types: frozenset[str]
    path: tuple[str, ...]
    in_envelope: bool = False


# The order of the facts, which is the order of Observed's fact attributes.
FACT_NAMES = (
    "error_type",
    "state",
    "state_details",
    "abortable",
    "action",
    "sign_on_receipt",
    "abort_tag",
    "tx_identifier",
    "tx_status",
    "tx_status_code",
    "tx_amount",
    "tx_currency",
    "tx_type",
    "req_amount",
    "req_currency",
    "req_type",
    "referenced",
)


def facts_for(dialect: Dialect) -> tuple[Fact, ...]:
    """The facts, with the dialect's names for what PROTOCOL.md leaves open."""
    abort = dialect.abort
    answers = _RESPONSES | {abort.response_type, M.SUBMIT_SIGNATURE_RESPONSE.value}
    facts = (
        Fact("error_type", answers, ("error", dialect.error.type_key), in_envelope=True),
        Fact("state", _UPDATES, ("state",)),
        Fact("state_details", _UPDATES, ("stateDetails",)),
        Fact("abortable", _UPDATES, ("abortable",)),
        Fact("action", _ACTIONS, (dialect.action.action_key,)),
        Fact(
            "sign_on_receipt",
            frozenset({M.SUBMIT_SIGNATURE_REQUEST.value}),
            (dialect.signature.on_receipt_key,),
        ),
        Fact("abort_tag", frozenset({abort.request_type}), (abort.tag_key,)),
        Fact("tx_identifier", _CARRY_TRANSACTION, ("transaction", "identifier")),
        Fact("tx_status", _CARRY_TRANSACTION, ("transaction", "status")),
        Fact("tx_status_code", _CARRY_TRANSACTION, ("transaction", "statusDetails", "code")),
        Fact("tx_amount", _CARRY_TRANSACTION, ("transaction", "amount")),
        Fact("tx_currency", _CARRY_TRANSACTION, ("transaction", "currency")),
        Fact("tx_type", _CARRY_TRANSACTION, ("transaction", "type")),
        Fact("req_amount", _REQUESTS, ("transactionParameters", "amount")),
        Fact("req_currency", _REQUESTS, ("transactionParameters", "currency")),
        Fact("req_type", _REQUESTS, ("transactionParameters", "type")),
        Fact(
            "referenced",
            _REQUESTS,
            ("transactionParameters", "referencedTransactionIdentifier"),
        ),
    )
    assert tuple(fact.name for fact in facts) == FACT_NAMES
    return facts


def _full_path(fact: Fact, msg_type: str) -> tuple[str, ...]:
    return fact.path if fact.in_envelope else (body_key(msg_type), *fact.path)


def facts_case(dialect: Dialect, payload: str = "payload", msg_type: str = "msg_type") -> str:
    """A SQL expression giving the list of every fact of a message, in FACT_NAMES order.

    One `json_extract_string` per message type reads all of its facts in one parse;
    facts a type does not carry take a path that matches nothing.
    """
    facts = facts_for(dialect)
    branches = []
    for t in sorted({t for fact in facts for t in fact.types}):
        paths = [_json_path(_full_path(fact, t)) if t in fact.types else _NOTHING for fact in facts]
        branches.append(
            f"WHEN {_sql_text(t)} THEN json_extract_string({payload}, [{', '.join(paths)}])"
        )
    return f"CASE {msg_type} {' '.join(branches)} END"


def fact_columns(facts_list: str) -> str:
    """Select expressions naming each element of a `facts_case` list."""
    return ", ".join(f"{facts_list}[{i}] AS {name}" for i, name in enumerate(FACT_NAMES, 1))


def read_facts(
    msg_type: str | None, envelope: dict[str, Any] | None, dialect: Dialect
) -> list[str | None]:
    """The facts of one parsed message, as `facts_sql` would give them."""
    facts = facts_for(dialect)
    if msg_type is None or envelope is None:
        return [None] * len(facts)
    values: list[str | None] = []
    for fact in facts:
        value: Any = envelope if msg_type in fact.types else None
        for key in _full_path(fact, msg_type) if value is not None else ():
            value = value.get(key) if isinstance(value, dict) else None
        values.append(as_text(value))
    return values


def as_text(value: object) -> str | None:
    """A JSON value as text, as `json_extract_string` gives it; None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return orjson.dumps(value).decode()


def _json_path(keys: tuple[str, ...]) -> str:
    quoted = ".".join('"' + key.replace('"', '\\"') + '"' for key in keys)
    return _sql_text(f"$.{quoted}")


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
