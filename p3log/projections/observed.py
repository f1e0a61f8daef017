"""An event as the projections see it: its columns and the facts of its body.

The fold never parses JSON: the facts it needs (declared on `Observed`, in
`facts.py`) arrive as text attributes, pulled out by DuckDB in the query that reads
the events (`observed_query`), or by `Observed.of_message` for plain-data callers.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from p3log.projections.facts import BASE_COLUMNS, Observed, fact_columns, facts_case
from p3log.protocol.dialect import Dialect

__all__ = ["Observed", "amount", "observed_query"]

_AMOUNT_PLACES = Decimal("0.0001")


def observed_query(dialect: Dialect, source: str, *extra: str) -> str:
    """SQL giving `Observed`'s columns in order (then any `extra` columns), for the
    events of `source` (a FROM clause over `events`, with any WHERE), in seq order."""
    base = ", ".join(
        "epoch_us(recorded_at) AS at_us" if name == "at_us" else name for name in BASE_COLUMNS
    )
    return (
        f"SELECT {', '.join((base, fact_columns('_facts'), *extra))} "
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
