"""The rows of every projection, and the tables that hold them.

One NamedTuple class per table (the fold makes millions of rows, and a tuple is
the cheapest immutable record Python has); its fields, in order, are the table's columns
(the contract's columns of docs/architecture.md first, then the ones p3log
adds). The SQL and Arrow types are derived from the field annotations, so a row
class is the only place a column is declared.

Every row names the event it grew from (`request_seq`, `seq`, `opened_seq`, ...):
that `origin` column is how a table is trimmed when part of a session is folded
again (see `store.py`), and what joins a row back to `events`.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple, NewType, Union, get_args, get_origin, get_type_hints

import attrs
import pyarrow as pa

Micros = NewType("Micros", int)
"""A UTC instant in microseconds since the Unix epoch: a TIMESTAMPTZ column."""

# Room for every ISO 4217 currency's minor units (up to 4 places) and any till total.
AMOUNT_SQL = "DECIMAL(19,4)"

_SQL_TYPES: dict[object, tuple[str, pa.DataType]] = {
    str: ("VARCHAR", pa.string()),
    int: ("BIGINT", pa.int64()),
    bool: ("BOOLEAN", pa.bool_()),
    float: ("DOUBLE", pa.float64()),
    Decimal: (AMOUNT_SQL, pa.decimal128(19, 4)),
    Micros: ("TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
}


class TransactionRow(NamedTuple):
    """One execute or amend request, and what became of it."""

    transaction_key: str
    session_id: str
    tag: str | None
    operation: str  # 'execute' | 'amend'
    resource: str | None
    requested_at: Micros
    completed_at: Micros | None
    outcome: str  # final transaction.status, 'ERROR' or 'INCOMPLETE'
    transaction_identifier: str | None
    amount: Decimal | None
    currency: str | None
    abort_requested: bool
    update_count: int
    action_count: int
    duration_ms: float | None
    transaction_type: str | None  # CHARGE, REFUND, CAPTURE, ...
    status_details_code: str | None
    error_type: str | None
    referenced_transaction_identifier: str | None
    request_seq: int
    response_seq: int | None


class TransactionStateRow(NamedTuple):
    """One update: the state it entered and how long the transaction stayed there."""

    transaction_key: str
    session_id: str
    seq: int
    state: str | None
    state_details: str | None
    abortable: bool
    entered_at: Micros
    time_in_state_ms: float | None  # until the next update, the response or the close


class AbortWindowRow(NamedTuple):
    """An interval in which the latest update said `abortable: true`."""

    transaction_key: str
    opened_at: Micros
    closed_at: Micros | None
    duration_ms: float | None
    session_id: str
    opened_seq: int
    closed_seq: int | None


class ActionWaitRow(NamedTuple):
    """An action the server sent, and how long it waited for the POS's answer."""

    transaction_key: str
    action: str | None
    asked_at: Micros
    answered_at: Micros | None
    answer: str | None  # 'signature' | 'on_receipt' | 'abort' | None
    wait_ms: float | None
    session_id: str
    asked_seq: int
    answered_seq: int | None
    attempts: int  # answers sent, including those the server refused


class AbortRow(NamedTuple):
    """One abort request."""

    transaction_key: str | None  # None: no execute was in flight to abort
    requested_at: Micros
    was_abortable: bool
    response_status: str | None
    answered_at: Micros | None
    session_id: str
    tag: str | None
    error_type: str | None
    request_seq: int
    response_seq: int | None


class LatencyRow(NamedTuple):
    """One step of an operation, timed from its request."""

    session_id: str
    transaction_key: str | None  # None for login and other non-transaction requests
    tag: str | None
    request_type: str
    step: str  # 'first_update' | 'action' | 'response'
    requested_at: Micros
    step_at: Micros
    latency_ms: float
    server_ms: float  # latency_ms minus pos_ms
    pos_ms: float  # time the server spent waiting for the POS to answer actions
    request_seq: int
    step_seq: int


class FindingRow(NamedTuple):
    """A protocol rule broken at event `seq`."""

    session_id: str
    transaction_key: str | None
    seq: int
    rule: str
    detail: str


class TransactionEventRow(NamedTuple):
    """Which transaction an event belongs to (requests, updates, aborts, signatures)."""

    transaction_key: str
    session_id: str
    seq: int


@attrs.frozen(eq=False)  # compared and hashed by identity: there is one of each
class Table:
    """A projection table: its row class, the column naming the row's origin event,
    and the key by which a changed row replaces its earlier version (None: rows are
    final when first written)."""

    name: str
    row: type[tuple[Any, ...]]
    origin: str
    key: str | None

    @property
    def columns(self) -> tuple[str, ...]:
        fields: tuple[str, ...] = getattr(self.row, "_fields")  # noqa: B009 (a NamedTuple)
        return fields

    def ddl(self) -> str:
        hints = get_type_hints(self.row)
        columns = ",\n    ".join(
            f"{name} {_column_type(hints[name])[0]}{_not_null(hints[name])}"
            for name in self.columns
        )
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {columns}\n)"

    @functools.cached_property
    def arrow_schema(self) -> pa.Schema:
        hints = get_type_hints(self.row)
        return pa.schema(
            [
                pa.field(name, _column_type(hints[name])[1], nullable=_optional(hints[name]))
                for name in self.columns
            ]
        )

    def arrow_table(self, rows: Sequence[tuple[Any, ...]]) -> pa.Table:
        schema = self.arrow_schema
        columns = zip(*rows, strict=True) if rows else [() for _ in schema]
        return pa.Table.from_arrays(
            [
                pa.array(values, type=field.type)
                for values, field in zip(columns, schema, strict=True)
            ],
            schema=schema,
        )


TABLES: tuple[Table, ...] = (
    Table("transactions", TransactionRow, origin="request_seq", key="request_seq"),
    Table("transaction_states", TransactionStateRow, origin="seq", key="seq"),
    Table("abort_windows", AbortWindowRow, origin="opened_seq", key="opened_seq"),
    Table("action_waits", ActionWaitRow, origin="asked_seq", key="asked_seq"),
    Table("aborts", AbortRow, origin="request_seq", key="request_seq"),
    Table("latencies", LatencyRow, origin="request_seq", key=None),
    Table("protocol_findings", FindingRow, origin="seq", key=None),
    Table("transaction_events", TransactionEventRow, origin="seq", key=None),
)
TABLE_BY_ROW: dict[type, Table] = {table.row: table for table in TABLES}


def _optional(hint: object) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _column_type(hint: object) -> tuple[str, pa.DataType]:
    if _optional(hint):
        (hint,) = (arg for arg in get_args(hint) if arg is not type(None))
    return _SQL_TYPES[hint]


def _not_null(hint: object) -> str:
    return "" if _optional(hint) else " NOT NULL"
