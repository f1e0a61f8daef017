"""One transaction's timeline: what the projections know about it, in event order.

This is the data behind `p3log show` (and the HTML report): `resolve_key` turns
what a user typed into a transaction key, `load_timeline` gathers the
transaction's row, every event that belongs to it with a short summary and the
markers the projections put there (an abort window opening, an action waiting and
being answered, an abort, a finding), and the rows of every other projection for
it. It reads a store connection and draws nothing; `render.py` does the drawing.

Times are the events' recorded times in UTC microseconds (`Micros`), and every
offset is measured from the transaction's request, so an offset is exactly the
difference of two events' `recorded_at`.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import attrs
import duckdb
import orjson

from p3log.projections.facts import as_text, read_facts
from p3log.projections.fold import UNKNOWN
from p3log.projections.observed import Observed, amount
from p3log.projections.rows import (
    TABLE_BY_ROW,
    AbortRow,
    AbortWindowRow,
    ActionWaitRow,
    FindingRow,
    LatencyRow,
    Micros,
    TransactionRow,
)
from p3log.projections.store import projected_state
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.kinds import SIGNATURE, TRANSACTION_REQUESTS, TRANSACTION_RESPONSES
from p3log.protocol.model import status_is_error
from p3log.store import lifecycle
from p3log.store.errors import StoreError
from p3log.store.lifecycle import ConnectionClosed

__all__ = [
    "MAX_CANDIDATES",
    "AmbiguousTransaction",
    "Marker",
    "MarkerKind",
    "Timeline",
    "TimelineEvent",
    "TransactionKeyError",
    "UnknownTransaction",
    "instant_fields",
    "load_timeline",
    "money",
    "resolve_key",
    "summarize",
    "unique_prefix",
]

MAX_CANDIDATES = 5
"""How many matching transactions an ambiguous KEY lists."""

MarkerKind = Literal[
    "window_opened",
    "window_closed",
    "action_asked",
    "action_answered",
    "abort",
    "abort_answered",
    "finding",
]

R = TypeVar("R")


class TransactionKeyError(StoreError):
    """A KEY that does not name exactly one transaction of the store."""


class UnknownTransaction(TransactionKeyError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"no transaction matches {key!r} (give a transaction key, a unique prefix "
            "of one, or a transaction identifier; `p3log transactions` lists them)"
        )
        self.key = key


class AmbiguousTransaction(TransactionKeyError):
    def __init__(self, key: str, candidates: Sequence[str], count: int) -> None:
        listed = ", ".join(candidates)
        more = f" and {count - len(candidates)} more" if count > len(candidates) else ""
        super().__init__(
            f"{key!r} matches {count} transactions: {listed}{more}; name one by its key"
        )
        self.key = key
        self.candidates = tuple(candidates)
        self.count = count


@attrs.frozen
class Marker:
    """Something the projections say happened at an event."""

    kind: MarkerKind
    text: str


@attrs.frozen
class TimelineEvent:
    """One event of the transaction, as an auditor reads it."""

    seq: int
    at: Micros
    offset_ms: float  # since the transaction's request
    sender: str  # 'client' | 'server' | 'tap'
    kind: str  # 'message', 'malformed' or a lifecycle kind
    msg_type: str | None
    tag: str | None
    status: str | None
    summary: str
    markers: tuple[Marker, ...] = ()


@attrs.frozen
class Timeline:
    """One transaction: its row, its events in seq order, and its projection rows."""

    transaction: TransactionRow
    events: tuple[TimelineEvent, ...]
    abort_windows: tuple[AbortWindowRow, ...]
    action_waits: tuple[ActionWaitRow, ...]
    aborts: tuple[AbortRow, ...]
    findings: tuple[FindingRow, ...]
    latencies: tuple[LatencyRow, ...]

    def offset_ms(self, at: int | None) -> float | None:
        """Milliseconds from the transaction's request to `at` (None stays None)."""
        return None if at is None else (at - self.transaction.requested_at) / 1000


@attrs.frozen
class Section:
    """One table of a timeline's details, as text cells: what `p3log show` and the
    report both print, so the two always say the same."""

    title: str
    name: str  # a stable identifier (the report's CSS class)
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def timeline_sections(timeline: Timeline) -> tuple[Section, ...]:
    """The abort windows, action waits, aborts, findings and latencies of a timeline;
    times as milliseconds since the request."""
    offset = timeline.offset_ms
    return (
        Section(
            "Abort windows",
            "abort-windows",
            ("opened +ms", "closed +ms", "duration ms", "seqs"),
            tuple(
                (
                    ms_text(offset(window.opened_at)),
                    ms_text(offset(window.closed_at)) or "still open",
                    ms_text(window.duration_ms),
                    f"{window.opened_seq} to {window.closed_seq or 'open'}",
                )
                for window in timeline.abort_windows
            ),
        ),
        Section(
            "Action waits",
            "action-waits",
            ("action", "asked +ms", "answered +ms", "answer", "wait ms", "attempts"),
            tuple(
                (
                    wait.action or "",
                    ms_text(offset(wait.asked_at)),
                    ms_text(offset(wait.answered_at)) or "never",
                    wait.answer or "",
                    ms_text(wait.wait_ms),
                    str(wait.attempts),
                )
                for wait in timeline.action_waits
            ),
        ),
        Section(
            "Aborts",
            "aborts",
            ("seq", "requested +ms", "was abortable", "response", "error type", "answered +ms"),
            tuple(
                (
                    str(abort.request_seq),
                    ms_text(offset(abort.requested_at)),
                    "yes" if abort.was_abortable else "NO",
                    abort.response_status or "none",
                    abort.error_type or "",
                    ms_text(offset(abort.answered_at)),
                )
                for abort in timeline.aborts
            ),
        ),
        Section(
            "Findings",
            "txn-findings",
            ("seq", "rule", "detail"),
            tuple((str(f.seq), f.rule, f.detail) for f in timeline.findings),
        ),
        Section(
            "Latencies",
            "latencies",
            ("request", "step", "seq", "latency ms", "server ms", "POS ms"),
            tuple(
                (
                    latency.request_type,
                    latency.step,
                    str(latency.step_seq),
                    ms_text(latency.latency_ms),
                    ms_text(latency.server_ms),
                    ms_text(latency.pos_ms),
                )
                for latency in timeline.latencies
            ),
        ),
    )


def ms_text(value: float | None) -> str:
    """Milliseconds to the microsecond the events were recorded with ("" for None)."""
    return "" if value is None else f"{value:.3f}"


def resolve_key(con: duckdb.DuckDBPyConnection, key: str) -> str:
    """The transaction key that `key` names: the key itself, a prefix of exactly one
    key, or the server's identifier of exactly one transaction.

    Raises `UnknownTransaction` when nothing matches and `AmbiguousTransaction`
    (naming up to `MAX_CANDIDATES` of them) when several transactions do.
    """
    exact = con.execute(
        "SELECT transaction_key FROM transactions WHERE transaction_key = ? LIMIT 1", [key]
    ).fetchall()
    if exact:
        return key
    matches = con.execute(
        """
        SELECT transaction_key, outcome, count(*) OVER () AS matches
        FROM transactions
        WHERE starts_with(transaction_key, $key) OR transaction_identifier = $key
        ORDER BY requested_at, request_seq
        LIMIT $limit
        """,
        {"key": key, "limit": MAX_CANDIDATES},
    ).fetchall()
    if not matches:
        raise UnknownTransaction(key)
    count = int(matches[0][2])
    if count == 1:
        return str(matches[0][0])
    raise AmbiguousTransaction(key, [f"{row[0]} ({row[1]})" for row in matches], count)


def unique_prefix(key: str, neighbours: Iterable[str | None], minimum: int = 0) -> str:
    """The shortest prefix of `key` (at least `minimum` characters) that no other key
    starts with, given the keys next to it in sorted order; the whole key when another
    key extends it (an exact key always resolves)."""
    common = max((_common_length(key, other) for other in neighbours if other), default=0)
    return key[: max(common + 1, minimum)]


def load_timeline(
    con: duckdb.DuckDBPyConnection, key: str, dialect: Dialect | None = None
) -> Timeline:
    """Everything about the transaction `key` names (see `resolve_key`). `dialect`
    None reads message bodies with the dialect the store was projected with."""
    dialect = dialect or _projected_dialect(con)
    key = resolve_key(con, key)
    (transaction,) = _rows(con, TransactionRow, "transaction_key = ?", [key])
    windows = _rows(con, AbortWindowRow, "transaction_key = ?", [key], "opened_seq")
    waits = _rows(con, ActionWaitRow, "transaction_key = ?", [key], "asked_seq")
    aborts = _rows(con, AbortRow, "transaction_key = ?", [key], "request_seq")
    findings = _rows(con, FindingRow, "transaction_key = ?", [key], "seq")
    latencies = _rows(con, LatencyRow, "transaction_key = ?", [key], "step_seq, request_seq")

    markers: dict[int, list[Marker]] = {}

    def mark(seq: int | None, kind: MarkerKind, what: str) -> None:
        if seq is not None:
            markers.setdefault(seq, []).append(Marker(kind, what))

    for window in windows:
        mark(window.opened_seq, "window_opened", "abort window opens")
        if window.closed_seq is not None:
            mark(
                window.closed_seq,
                "window_closed",
                f"abort window closes after {_ms(window.duration_ms)} ms",
            )
    for wait in waits:
        action = wait.action or "action"
        if wait.answered_seq is None:
            mark(wait.asked_seq, "action_asked", f"{action} waits for the POS (never answered)")
        else:
            mark(wait.asked_seq, "action_asked", f"{action} waits for the POS")
            tries = f" ({wait.attempts} attempts)" if wait.attempts > 1 else ""
            mark(
                wait.answered_seq,
                "action_answered",
                f"{action} answered with {wait.answer} after {_ms(wait.wait_ms)} ms{tries}",
            )
    for abort in aborts:
        mark(
            abort.request_seq,
            "abort",
            "abort requested while abortable"
            if abort.was_abortable
            else "abort requested while NOT abortable",
        )
        if abort.response_seq is not None:
            refused = status_is_error(abort.response_status)
            reason = " ".join(filter(None, (abort.response_status, abort.error_type)))
            mark(
                abort.response_seq,
                "abort_answered",
                f"abort refused: {reason}" if refused else "abort accepted",
            )
    for finding in findings:
        mark(finding.seq, "finding", f"{finding.rule}: {finding.detail}")

    linked = con.execute(
        "SELECT seq FROM transaction_events WHERE transaction_key = ? AND session_id = ? "
        "AND seq >= ?",
        [key, transaction.session_id, transaction.request_seq],
    ).fetchall()
    seqs = sorted({row[0] for row in linked} | markers.keys())
    events = _events(con, seqs, dialect)
    return Timeline(
        transaction=transaction,
        events=tuple(
            TimelineEvent(
                seq=event.seq,
                at=Micros(event.at_us),
                offset_ms=(event.at_us - transaction.requested_at) / 1000,
                sender=event.sender,
                kind=event.kind,
                msg_type=event.msg_type,
                tag=event.tag,
                status=event.status,
                summary=summarize(event, envelope),
                markers=tuple(markers.get(event.seq, ())),
            )
            for event, envelope in events
        ),
        abort_windows=windows,
        action_waits=waits,
        aborts=aborts,
        findings=findings,
        latencies=latencies,
    )


def summarize(event: Observed, envelope: dict[str, Any] | None = None) -> str:
    """A few words on what an event says: an update's state, an action's name, a
    response's status and outcome, a request's parameters; for a lifecycle event
    (whose `envelope` is the tap's JSON object), why a connection closed."""
    if event.kind == "malformed":
        return f"malformed: {event.parse_note or 'not a P3 message'}"
    if event.kind != "message":
        return _lifecycle(event.kind, envelope or {})
    msg_type = event.msg_type or ""
    if msg_type.endswith("_UPDATE"):
        state, details = event.state, event.state_details
        abortable = "abortable" if event.abortable == "true" else "not abortable"
        # Details usually extend the state (PROCESSING -> PROCESSING_ACTION_REQUIRED).
        if details is None or state is None or details.startswith(state):
            shown = details or state
        else:
            shown = f"{state} / {details}"
        return _join(shown, abortable)
    if msg_type.endswith("_ACTION"):
        return f"action {event.action}"
    if msg_type.endswith("_RESPONSE"):
        if status_is_error(event.status):
            return _join(event.status, event.error_type)
        status = event.tx_status
        if status is None and msg_type in TRANSACTION_RESPONSES:
            status = UNKNOWN
        return _join(event.status, status)
    if msg_type in TRANSACTION_REQUESTS:
        return _join(
            event.req_type,
            money(amount(event.req_amount), event.req_currency),
            f"of {event.referenced}" if event.referenced else None,
        )
    if event.abort_tag is not None:
        return f"aborts tag {event.abort_tag}"
    if msg_type == SIGNATURE:
        return "sign on receipt" if event.sign_on_receipt == "true" else "signature"
    return ""


def _lifecycle(kind: str, details: dict[str, Any]) -> str:
    event = lifecycle.structure(kind, details)
    if isinstance(event, ConnectionClosed):
        by, code, reason = (as_text(value) for value in (event.by, event.code, event.reason))
        return _join(f"closed by {by}" if by else "closed", code, reason)
    return kind.replace("_", " ")


def _join(*parts: str | None) -> str:
    return " · ".join(part for part in parts if part)


def money(value: Decimal | None, currency: str | None) -> str | None:
    """An amount as a till shows it: at least two decimal places, then the currency."""
    if value is None:
        return None
    places = max(2, -int(value.normalize().as_tuple().exponent))
    return f"{value:.{places}f} {currency}" if currency else f"{value:.{places}f}"


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")


def _common_length(a: str, b: str) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def _projected_dialect(con: duckdb.DuckDBPyConnection) -> Dialect:
    state = projected_state(con)
    return state[0] if state is not None else DEFAULT_DIALECT


def _rows(
    con: duckdb.DuckDBPyConnection,
    row: type[R],
    where: str,
    params: list[Any],
    order: str | None = None,
) -> tuple[R, ...]:
    table = TABLE_BY_ROW[row]
    micros = instant_fields(row)
    columns = ", ".join(f"epoch_us({name})" if name in micros else name for name in table.columns)
    sql = f"SELECT {columns} FROM {table.name} WHERE {where} ORDER BY {order or table.origin}"
    return tuple(row(*values) for values in con.execute(sql, params).fetchall())


def instant_fields(row: type) -> frozenset[str]:
    """The fields of an attrs class that hold instants (`Micros`; TIMESTAMPTZ columns)."""
    return frozenset(
        name
        for name, hint in get_type_hints(row).items()
        if hint is Micros
        or (get_origin(hint) in (Union, types.UnionType) and Micros in get_args(hint))
    )


def _events(
    con: duckdb.DuckDBPyConnection, seqs: list[int], dialect: Dialect
) -> list[tuple[Observed, dict[str, Any] | None]]:
    """The events `seqs`, each with its payload parsed (a timeline has few events)."""
    if not seqs:
        return []
    # The range lets DuckDB skip row groups by their min/max seq before the list test.
    rows = con.execute(
        "SELECT seq, session_id, sender, kind, msg_type, tag, resource, status, "
        "epoch_us(recorded_at), parse_note, payload FROM events "
        "WHERE seq BETWEEN ? AND ? AND list_contains(?, seq) ORDER BY seq",
        [seqs[0], seqs[-1], seqs],
    ).fetchall()
    events = []
    for *columns, payload in rows:
        envelope = _parse(payload)
        facts = read_facts(columns[4], envelope, dialect)
        events.append((Observed(*columns, *facts), envelope))
    return events


def _parse(payload: str | None) -> dict[str, Any] | None:
    try:
        value = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:  # lenient JSON, as in the docs' examples
        return None
    return value if isinstance(value, dict) else None
