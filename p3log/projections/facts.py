"""An event as the projections see it, and the few body fields the fold reads,
declared once: each fact is a field of `Observed`, annotated with where it is read.

Parsing every payload in Python would cost more than the whole fold (about 6 µs
per message with orjson), so the rebuild and the index follower let DuckDB pull
these fields out, vectorised and in C++, in the query that reads the events
(`facts_case`, used by `observed.observed_query`). Tests and plain-data callers
build the same values from a parsed message (`read_facts`, `Observed.of_message`).
Both renderings, and `FACT_NAMES`, come from the annotations of `Observed`; a test
checks that the renderings agree. Adding a fact is one annotated line below.

Every fact is text, as DuckDB's `json_extract_string` gives it: strings as they
are, `true`/`false`, numbers in their shortest form, objects as compact JSON. (The
two renderings print very large doubles differently, 1e16 as `1e+16` or as
`10000000000000000.0`; the fold reads numbers only as amounts, by value.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple, get_type_hints

import attrs
import orjson

from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.kinds import (
    ACTIONS,
    CARRY_TRANSACTION,
    SIGNATURE,
    TRANSACTION_REQUESTS,
    UPDATES,
    Kinds,
)
from p3log.protocol.model import body_key
from p3log.protocol.parse import Envelope

# A path no P3 message has: the slot of a fact a message type does not carry.
_NOTHING = "'$.\"p3log: not carried\"'"

Types = frozenset[str] | Callable[[Dialect], frozenset[str]]
Path = tuple[str, ...] | Callable[[Dialect], tuple[str, ...]]


@attrs.frozen
class Read:
    """Where a fact of `Observed` is read: in messages of `types`, at `path` below
    the message's body (or below the envelope, with `in_envelope`). Either may be
    a function of the dialect, for what docs/protocol.md leaves open."""

    types: Types
    path: Path
    in_envelope: bool = False


@attrs.frozen
class Fact:
    """One fact under one dialect."""

    name: str
    types: frozenset[str]
    path: tuple[str, ...]
    in_envelope: bool = False


def _answers(dialect: Dialect) -> frozenset[str]:
    return Kinds(dialect).answers()


def _abort(dialect: Dialect) -> frozenset[str]:
    return frozenset({dialect.abort.request_type})


def _error_type(dialect: Dialect) -> tuple[str, ...]:
    return ("error", dialect.error.type_key)


def _action(dialect: Dialect) -> tuple[str, ...]:
    return (dialect.action.action_key,)


def _on_receipt(dialect: Dialect) -> tuple[str, ...]:
    return (dialect.signature.on_receipt_key,)


def _abort_tag(dialect: Dialect) -> tuple[str, ...]:
    return (dialect.abort.tag_key,)


_SIGNING = frozenset({SIGNATURE})
_TX = CARRY_TRANSACTION
_REQ = TRANSACTION_REQUESTS
Text = str | None


class Observed(NamedTuple):
    """One event: the `events` columns the fold reads (`at_us` is `recorded_at` in
    UTC microseconds), then the facts (each annotated with `Read`), each text or
    None. A tuple, because the fold makes millions of them."""

    seq: int
    session_id: str
    sender: str
    kind: str
    msg_type: str | None
    tag: str | None
    resource: str | None
    status: str | None
    at_us: int
    parse_note: str | None
    error_type: Annotated[Text, Read(_answers, _error_type, in_envelope=True)]
    state: Annotated[Text, Read(UPDATES, ("state",))]
    state_details: Annotated[Text, Read(UPDATES, ("stateDetails",))]
    abortable: Annotated[Text, Read(UPDATES, ("abortable",))]
    action: Annotated[Text, Read(ACTIONS, _action)]
    sign_on_receipt: Annotated[Text, Read(_SIGNING, _on_receipt)]
    abort_tag: Annotated[Text, Read(_abort, _abort_tag)]
    tx_identifier: Annotated[Text, Read(_TX, ("transaction", "identifier"))]
    tx_status: Annotated[Text, Read(_TX, ("transaction", "status"))]
    tx_status_code: Annotated[Text, Read(_TX, ("transaction", "statusDetails", "code"))]
    tx_amount: Annotated[Text, Read(_TX, ("transaction", "amount"))]
    tx_currency: Annotated[Text, Read(_TX, ("transaction", "currency"))]
    tx_type: Annotated[Text, Read(_TX, ("transaction", "type"))]
    req_amount: Annotated[Text, Read(_REQ, ("transactionParameters", "amount"))]
    req_currency: Annotated[Text, Read(_REQ, ("transactionParameters", "currency"))]
    req_type: Annotated[Text, Read(_REQ, ("transactionParameters", "type"))]
    referenced: Annotated[
        Text, Read(_REQ, ("transactionParameters", "referencedTransactionIdentifier"))
    ]

    @classmethod
    def of_message(
        cls,
        seq: int,
        session_id: str,
        sender: str,
        kind: str,
        at_us: int,
        payload: str | None,
        parse_note: str | None = None,
        dialect: Dialect = DEFAULT_DIALECT,
    ) -> Observed:
        """An event from its payload text, with the envelope columns and facts read
        from it as the store and `observed_query` would."""
        try:
            obj = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            obj = None
        # The store's own reading of an envelope, so the columns match the events'.
        msg_type = obj.get("type") if isinstance(obj, dict) else None
        envelope = (
            Envelope.of(obj, msg_type, lenient=False)
            if isinstance(obj, dict) and isinstance(msg_type, str)
            else None
        )
        if envelope is None:
            return cls(
                seq,
                session_id,
                sender,
                kind,
                None,
                None,
                None,
                None,
                at_us,
                parse_note,
                *read_facts(None, None, dialect),
            )
        return cls(
            seq,
            session_id,
            sender,
            kind,
            envelope.msg_type,
            envelope.tag,
            envelope.resource,
            envelope.status,
            at_us,
            parse_note,
            *read_facts(envelope.msg_type, envelope.obj, dialect),
        )


def _declared() -> tuple[tuple[str, ...], dict[str, Read]]:
    """Observed's columns, and the facts among them (which come last, in order)."""
    reads: dict[str, Read] = {}
    for name, hint in get_type_hints(Observed, include_extras=True).items():
        read = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Read)), None)
        if read is not None:
            reads[name] = read
    columns = tuple(name for name in Observed._fields if name not in reads)
    assert Observed._fields == columns + tuple(reads), "facts come after the columns"
    return columns, reads


BASE_COLUMNS, _READS = _declared()
FACT_NAMES: tuple[str, ...] = tuple(_READS)
"""The facts, in the order of Observed's fact attributes."""


@functools.cache
def facts_for(dialect: Dialect) -> tuple[Fact, ...]:
    """The facts, with the dialect's names for what docs/protocol.md leaves open."""
    return tuple(
        Fact(
            name,
            read.types(dialect) if callable(read.types) else read.types,
            read.path(dialect) if callable(read.path) else read.path,
            read.in_envelope,
        )
        for name, read in _READS.items()
    )


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
    """The facts of one parsed message, as `facts_case` gives them in SQL."""
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
