"""An event as the projections see it: its columns and the facts of its body.

The fold never parses JSON: the facts it needs (`facts.py`) arrive as text
attributes, pulled out by DuckDB in the query that reads the events
(`observed_query`), or by `Observed.of_message` for plain-data callers.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NamedTuple

import orjson

from p3log.projections.facts import FACT_NAMES, fact_columns, facts_case, read_facts
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.parse import Envelope

_BASE_COLUMNS = (
    "seq",
    "session_id",
    "sender",
    "kind",
    "msg_type",
    "tag",
    "resource",
    "status",
    "at_us",
    "parse_note",
)
_AMOUNT_PLACES = Decimal("0.0001")


class Observed(NamedTuple):
    """One event: the `events` columns the fold reads (`at_us` is `recorded_at` in
    UTC microseconds), then the facts (FACT_NAMES), each text or None. A tuple,
    because the fold makes millions of them."""

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
    error_type: str | None
    state: str | None
    state_details: str | None
    abortable: str | None
    action: str | None
    sign_on_receipt: str | None
    abort_tag: str | None
    tx_identifier: str | None
    tx_status: str | None
    tx_status_code: str | None
    tx_amount: str | None
    tx_currency: str | None
    tx_type: str | None
    req_amount: str | None
    req_currency: str | None
    req_type: str | None
    referenced: str | None

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


assert Observed._fields == _BASE_COLUMNS + FACT_NAMES


def observed_query(dialect: Dialect, source: str) -> str:
    """SQL giving `Observed`'s columns in order, for the events of `source` (a FROM
    clause over `events`, with any WHERE), in seq order."""
    base = ", ".join(
        "epoch_us(recorded_at) AS at_us" if name == "at_us" else name for name in _BASE_COLUMNS
    )
    return (
        f"SELECT {base}, {fact_columns('_facts')} "
        f"FROM (SELECT *, {facts_case(dialect)} AS _facts FROM {source}) ORDER BY seq"
    )


def amount(value: str | None) -> Decimal | None:
    """A fact as an amount of at most four decimal places, or None if it is not one
    (a peer's odd value must not stop a projection)."""
    if value is None:
        return None
    try:
        result = Decimal(value)
        quantized = result.quantize(_AMOUNT_PLACES)
    except (InvalidOperation, ValueError):
        return None
    if quantized != result or not quantized.is_finite() or quantized.adjusted() >= 15:
        return None
    return quantized
