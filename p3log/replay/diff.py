"""`p3log diff`: two recorded sessions (an original and its replay, or any two runs of
one conversation) compared operation by operation, and their latencies step by step.

Sans-IO over `RecordedSession`s (`diff_sessions`); `load_diff` reads the two
sessions from a store, and `render_diff` prints the result.

Alignment
---------
Each session is cut into *operations* (`operations`): a POS request and the server
messages carrying its tag (updates, actions, the response). An abort or a signature
belongs to the transaction it acts on (the rule the projections keep too, in
`p3log/protocol/correlation.py`: of the executes in flight on its resource, the one
whose action waits, else the latest with an update, else the latest; under
`body_tag` abort correlation, the execute in flight whose tag it quotes), so its key names
that transaction: `EXECUTE_TRANSACTION_REQUEST #2 / ABORT_TRANSACTION_REQUEST #1`.
Other requests count by type: the first execute of A is aligned with the first
execute of B, the login with the login, the second amend with the second amend.
What belongs to no request (a server message with a tag no request used, bytes
that are not JSON) is compared in order under `(unattributed)`.

Within an aligned operation the messages are aligned in order by type
(`difflib.SequenceMatcher`): a message only A has is *missing*, one only B has is
*extra*, and two of the same type at the same place that differ after
normalisation are *changed*, with every JSON path at which they differ. Volatile
paths are ignored (`VolatilePaths.between_runs`: tags, clock readings, identifiers,
the redacted secret, signature images, receipts' date and time), and identifiers
B's server issued are read back as A's, learned from the aligned messages, so a
receipt that prints a new identifier is no difference.

Latencies
---------
For every step, the time from a POS request to its first update and to its response
(per request type), and from an action to the POS's answer (per answering request
type: a signature or an abort), as p50 and p95 for each session and their
difference (B - A), in milliseconds from the events' monotonic clock: the steps of
the `latencies` and `action_waits` projections.
"""

from __future__ import annotations

import difflib
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import attrs
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from p3log.protocol import jsontext
from p3log.protocol.correlation import InFlight
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.kinds import ACTIONS, EXECUTE, SIGNATURE, UPDATES, Kind, Kinds, Step
from p3log.protocol.model import body_key, status_is_error
from p3log.replay.normalise import (
    ABSENT,
    VOLATILE,
    VolatilePaths,
    canonical,
    differences,
    normalise,
)
from p3log.replay.recording import RecordedMessage, RecordedSession, read_session
from p3log.replay.rewrite import Renames
from p3log.store.read import open_store
from p3log.visible import visible

__all__ = [
    "Change",
    "DiffFormat",
    "FieldChange",
    "LatencySample",
    "LatencyStat",
    "MessageChange",
    "Operation",
    "SessionDiff",
    "Stats",
    "compare_latencies",
    "diff_sessions",
    "latency_samples",
    "load_diff",
    "operations",
    "percentile",
    "render_diff",
    "short_name",
]

Change = Literal["missing", "extra", "changed"]


class DiffFormat(StrEnum):
    """What `p3log diff` prints: tables for people, one JSON object for scripts."""

    table = "table"
    json = "json"


UNATTRIBUTED = "(unattributed)"
STEPS: tuple[str, ...] = (Step.FIRST_UPDATE, Step.ACTION_ANSWER, Step.RESPONSE)


# --- operations ----------------------------------------------------------------------


@attrs.frozen
class Operation:
    """A request and the messages that belong to it, under its alignment key."""

    key: str
    messages: tuple[RecordedMessage, ...]
    parent: str | None = None  # the transaction's key, for an abort or a signature


@attrs.define(eq=False)  # compared by identity: `InFlight` looks operations up
class _Building:
    key: str
    messages: list[RecordedMessage]
    parent: _Building | None = None
    children: Counter[str] = attrs.field(factory=Counter)
    answered: bool = False  # its response arrived
    # For an execute, what `InFlight` asks (see p3log/protocol/correlation.py).
    action_waits: bool = False
    updated: bool = False
    answer: _Building | None = None  # the latest request that answered its action


def operations(session: RecordedSession, dialect: Dialect = DEFAULT_DIALECT) -> list[Operation]:
    """`session` cut into operations, in the order their requests were sent (see the
    module doc); the unattributed messages, if any, come last."""
    kinds = Kinds(dialect)
    abort_body = body_key(kinds.abort)
    built: list[_Building] = []
    by_tag: dict[str, _Building] = {}
    in_flight: InFlight[_Building] = InFlight()
    counts: Counter[str] = Counter()
    other: list[RecordedMessage] = []
    for message in session.messages:
        msg_type = message.msg_type
        if message.sender == "client" and kinds.of(msg_type) is Kind.REQUEST:
            assert msg_type is not None
            operation = _Building("", [message])
            execute = operation if msg_type == EXECUTE else None
            in_flight.request(message.tag, message.resource, execute)
            parent = None
            if msg_type == kinds.abort:
                quoted = _quoted_tag(message.payload, abort_body, dialect.abort.tag_key)
                parent = in_flight.abort_target(dialect.abort, message.resource, quoted)
            elif msg_type == SIGNATURE:
                parent = in_flight.acted_on(message.resource)
            if parent is not None:
                parent.children[msg_type] += 1
                operation.key = f"{parent.key} / {msg_type} #{parent.children[msg_type]}"
                operation.parent = parent
                if parent.action_waits:
                    parent.action_waits, parent.answer = False, operation
            else:
                counts[msg_type] += 1
                operation.key = f"{msg_type} #{counts[msg_type]}"
            built.append(operation)
            if message.tag is not None:
                by_tag[message.tag] = operation
        elif message.sender == "server" and message.tag is not None and message.tag in by_tag:
            operation = by_tag[message.tag]
            operation.messages.append(message)
            _server_said(kinds, in_flight, operation, message)
        else:
            other.append(message)
    found = [
        Operation(op.key, tuple(op.messages), op.parent.key if op.parent else None) for op in built
    ]
    if other:
        found.append(Operation(UNATTRIBUTED, tuple(other)))
    return found


def _server_said(
    kinds: Kinds, in_flight: InFlight[_Building], operation: _Building, message: RecordedMessage
) -> None:
    """What a server message for `operation` changes in the executes in flight."""
    if operation.answered:
        return
    msg_type = message.msg_type
    is_execute = operation.messages[0].msg_type == EXECUTE
    if is_execute and msg_type in UPDATES:
        operation.updated = True
    elif is_execute and msg_type in ACTIONS:
        operation.action_waits = True
    elif kinds.of(msg_type) is Kind.RESPONSE:
        operation.answered = True
        parent = operation.parent
        if is_execute:
            in_flight.finish(operation)
            operation.action_waits = False
        elif (
            parent is not None
            and parent.answer is operation
            and not parent.answered
            and _refused(message)
        ):
            # A refused answer leaves the action open: the POS may answer again.
            parent.action_waits, parent.answer = True, None


def _refused(message: RecordedMessage) -> bool:
    status = message.payload.get("status") if message.payload is not None else None
    return status_is_error(status if isinstance(status, str) else None)


def _quoted_tag(payload: dict[str, Any] | None, body_name: str, key: str) -> str | None:
    body = payload.get(body_name) if payload is not None else None
    quoted = body.get(key) if isinstance(body, dict) else None
    return quoted if isinstance(quoted, str) else None


# --- message differences -------------------------------------------------------------


@attrs.frozen
class FieldChange:
    """One JSON path at which two aligned messages differ, and both values there."""

    path: str
    a: Any
    b: Any


@attrs.frozen
class MessageChange:
    """A message only A has (`missing`), only B has (`extra`), or that both have and
    that differs (`changed`, with every differing path)."""

    change: Change
    operation: str
    msg_type: str | None
    sender: str
    a_seq: int | None
    b_seq: int | None
    fields: tuple[FieldChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "change": self.change,
            "operation": self.operation,
            "msg_type": self.msg_type,
            "sender": self.sender,
            "a_seq": self.a_seq,
            "b_seq": self.b_seq,
        }
        if self.change == "changed":
            found["fields"] = [
                {"path": f.path, "a": _plain(f.a), "b": _plain(f.b)} for f in self.fields
            ]
        return found


# --- latencies -----------------------------------------------------------------------


@attrs.frozen
class LatencySample:
    """One step of one request: `first_update`, `response` (from the request, per
    request type) or `action_answer` (from an action, per answering request type)."""

    step: str
    msg_type: str
    ms: float


@attrs.frozen
class Stats:
    count: int
    p50_ms: float
    p95_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms}


@attrs.frozen
class LatencyStat:
    """One step and message type in both sessions (None where a session has none)."""

    step: str
    msg_type: str
    a: Stats | None
    b: Stats | None

    @property
    def delta_p50_ms(self) -> float | None:
        return self.b.p50_ms - self.a.p50_ms if self.a and self.b else None

    @property
    def delta_p95_ms(self) -> float | None:
        return self.b.p95_ms - self.a.p95_ms if self.a and self.b else None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "msg_type": self.msg_type,
            "a": self.a.to_json() if self.a else None,
            "b": self.b.to_json() if self.b else None,
            "delta_p50_ms": self.delta_p50_ms,
            "delta_p95_ms": self.delta_p95_ms,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, interpolated linearly between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_samples(
    session: RecordedSession, dialect: Dialect = DEFAULT_DIALECT
) -> list[LatencySample]:
    """Every step of every request of `session` (see the module doc)."""
    kinds = Kinds(dialect)
    found: list[LatencySample] = []
    ops = operations(session, dialect)
    children: dict[str, list[Operation]] = {}
    for op in ops:
        if op.parent is not None:
            children.setdefault(op.parent, []).append(op)
    for op in ops:
        if op.key == UNATTRIBUTED:
            continue
        request, rest = op.messages[0], op.messages[1:]
        request_type = request.msg_type or ""
        answers = [child.messages[0] for child in children.get(op.key, [])]
        had_update = had_response = False
        for message in rest:
            step = kinds.step(message.msg_type, had_update=had_update)
            if step is Step.FIRST_UPDATE:
                had_update = True
                found.append(LatencySample(step, request_type, _ms(request, message)))
            elif step is Step.RESPONSE and not had_response:
                had_response = True
                found.append(LatencySample(step, request_type, _ms(request, message)))
            elif step is Step.ACTION:
                answer = next((a for a in answers if a.at_ns >= message.at_ns), None)
                if answer is not None:
                    found.append(
                        LatencySample(
                            Step.ACTION_ANSWER, answer.msg_type or "", _ms(message, answer)
                        )
                    )
    return found


def compare_latencies(a: Iterable[LatencySample], b: Iterable[LatencySample]) -> list[LatencyStat]:
    """p50 and p95 per step and message type for both sessions, in step order."""
    grouped: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for side, samples in ((0, a), (1, b)):
        for sample in samples:
            grouped.setdefault((sample.step, sample.msg_type), ([], []))[side].append(sample.ms)

    def stats(values: list[float]) -> Stats | None:
        if not values:
            return None
        return Stats(len(values), percentile(values, 0.50), percentile(values, 0.95))

    order = {step: index for index, step in enumerate(STEPS)}
    keys = sorted(grouped, key=lambda key: (order.get(key[0], len(order)), key[0], key[1]))
    return [LatencyStat(*key, stats(grouped[key][0]), stats(grouped[key][1])) for key in keys]


def _ms(start: RecordedMessage, end: RecordedMessage) -> float:
    return (end.at_ns - start.at_ns) / 1e6


# --- the diff ------------------------------------------------------------------------


@attrs.frozen
class SessionDiff:
    """Session B compared with session A (see the module doc)."""

    a: str
    b: str
    a_messages: int
    b_messages: int
    a_operations: int
    b_operations: int
    same: int  # aligned message pairs with no difference
    changes: tuple[MessageChange, ...]
    latencies: tuple[LatencyStat, ...]
    volatile: VolatilePaths

    @property
    def identical(self) -> bool:
        """No message missing, extra or changed (latencies do not count)."""
        return not self.changes

    def count(self, change: Change) -> int:
        return sum(1 for item in self.changes if item.change == change)

    def summary(self) -> str:
        if self.identical:
            return (
                f"{self.a} and {self.b}: no differences in {self.same} aligned messages "
                "(volatile fields ignored)"
            )
        return (
            f"{self.a} and {self.b}: {self.count('missing')} missing, "
            f"{self.count('extra')} extra, {self.count('changed')} changed; "
            f"{self.same} aligned messages the same (volatile fields ignored)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "a": {
                "session_id": self.a,
                "messages": self.a_messages,
                "operations": self.a_operations,
            },
            "b": {
                "session_id": self.b,
                "messages": self.b_messages,
                "operations": self.b_operations,
            },
            "identical": self.identical,
            "counts": {
                "same": self.same,
                "missing": self.count("missing"),
                "extra": self.count("extra"),
                "changed": self.count("changed"),
            },
            "differences": [item.to_json() for item in self.changes],
            "latencies": [item.to_json() for item in self.latencies],
            "volatile_paths": [str(path) for path in self.volatile.paths],
        }


def diff_sessions(
    a: RecordedSession,
    b: RecordedSession,
    *,
    volatile: VolatilePaths | None = None,
    dialect: Dialect = DEFAULT_DIALECT,
) -> SessionDiff:
    """Compare session `b` with session `a` (see the module doc)."""
    volatile = volatile or VolatilePaths.between_runs(dialect)
    ops_a, ops_b = operations(a, dialect), operations(b, dialect)
    by_key_b = {op.key: op for op in ops_b}
    keys_a = {op.key for op in ops_a}
    renames = Renames(dialect=dialect)  # B's identifiers -> A's, learned on the way
    changes: list[MessageChange] = []
    same = 0
    for op in ops_a:
        other = by_key_b.get(op.key)
        found, equal = _align(
            op.key, op.messages, other.messages if other else (), renames, volatile
        )
        changes += found
        same += equal
    for op in ops_b:
        if op.key not in keys_a:
            changes += _align(op.key, (), op.messages, renames, volatile)[0]
    return SessionDiff(
        a=a.session_id,
        b=b.session_id,
        a_messages=len(a.messages),
        b_messages=len(b.messages),
        a_operations=sum(op.key != UNATTRIBUTED for op in ops_a),
        b_operations=sum(op.key != UNATTRIBUTED for op in ops_b),
        same=same,
        changes=tuple(changes),
        latencies=tuple(
            compare_latencies(latency_samples(a, dialect), latency_samples(b, dialect))
        ),
        volatile=volatile,
    )


def _align(
    key: str,
    a: Sequence[RecordedMessage],
    b: Sequence[RecordedMessage],
    renames: Renames,
    volatile: VolatilePaths,
) -> tuple[list[MessageChange], int]:
    """The changes within one operation, and how many aligned pairs are the same."""
    changes: list[MessageChange] = []
    same = 0

    def only(change: Change, message: RecordedMessage) -> MessageChange:
        seqs = (message.seq, None) if change == "missing" else (None, message.seq)
        return MessageChange(change, key, message.msg_type, message.sender, *seqs)

    types_a = [(m.sender, m.msg_type or "") for m in a]
    types_b = [(m.sender, m.msg_type or "") for m in b]
    matcher = difflib.SequenceMatcher(None, types_a, types_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for left, right in zip(a[i1:i2], b[j1:j2], strict=True):
                fields = _compare(left, right, renames, volatile)
                if fields:
                    changes.append(
                        MessageChange(
                            "changed", key, left.msg_type, left.sender, left.seq, right.seq, fields
                        )
                    )
                else:
                    same += 1
            continue
        changes += [only("missing", m) for m in a[i1:i2]]
        changes += [only("extra", m) for m in b[j1:j2]]
    return changes, same


def _compare(
    a: RecordedMessage, b: RecordedMessage, renames: Renames, volatile: VolatilePaths
) -> tuple[FieldChange, ...]:
    if a.payload is None or b.payload is None:
        if a.raw == b.raw:
            return ()
        return (FieldChange("(the message)", a.text, b.text),)
    renames.learn_ids(a.payload, b.payload)
    left = normalise(a.payload, volatile)
    right = normalise(renames.incoming(b.payload), volatile)
    return tuple(FieldChange(d.path, d.recorded, d.got) for d in differences(left, right))


def load_diff(
    root: Path,
    a: str,
    b: str,
    *,
    volatile: VolatilePaths | None = None,
    dialect: Dialect | None = None,
) -> SessionDiff:
    """Read sessions `a` and `b` (ids or unique prefixes) of the store at `root` and
    compare them. Raises `ReplayError` (no such session) and `StoreError`."""
    con = open_store(root)
    try:
        first, second = read_session(con, a), read_session(con, b)
    finally:
        con.close()
    return diff_sessions(first, second, volatile=volatile, dialect=dialect or DEFAULT_DIALECT)


def _plain(value: Any) -> Any:
    """A normalised JSON value as plain Python for `json.dumps` (numbers by value)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# --- output --------------------------------------------------------------------------


def render_diff(console: Console, diff: SessionDiff, fmt: DiffFormat = DiffFormat.table) -> None:
    """The diff as one JSON object, or as a summary line, a table of differences and a
    table of latencies (operations and requests named short: `EXECUTE #2 / ABORT #1`)."""
    if fmt is DiffFormat.json:
        console.out(json.dumps(diff.to_json(), indent=2), highlight=False)
        return
    console.print(f"p3log diff: {visible(diff.summary())}", highlight=False, markup=False)
    if diff.changes:
        console.print("differences (- only in A, + only in B, ~ changed):", highlight=False)
        for line in _listing(diff.changes):
            console.print(visible(line), highlight=False, markup=False)
    if diff.latencies:
        table = Table(
            title="latencies, ms",
            box=box.SIMPLE_HEAD,
            title_justify="left",
            padding=(0, 0),
        )
        table.add_column("step")
        table.add_column("request")
        for column in ("n A/B", "p50 A", "p50 B", "Δ p50", "p95 A", "p95 B", "Δ p95"):
            table.add_column(column, justify="right")
        for stat in diff.latencies:
            counts = f"{stat.a.count if stat.a else 0}/{stat.b.count if stat.b else 0}"
            table.add_row(
                Text(visible(stat.step)),
                Text(visible(short_name(stat.msg_type))),
                counts,
                _number(stat.a.p50_ms if stat.a else None),
                _number(stat.b.p50_ms if stat.b else None),
                _number(stat.delta_p50_ms, signed=True),
                _number(stat.a.p95_ms if stat.a else None),
                _number(stat.b.p95_ms if stat.b else None),
                _number(stat.delta_p95_ms, signed=True),
            )
        console.print(table, highlight=False)


def short_name(text: str) -> str:
    """An operation key or a request type without the `_TRANSACTION_REQUEST` /
    `_REQUEST` suffixes: `EXECUTE #2 / ABORT #1`."""
    return text.replace("_TRANSACTION_REQUEST", "").replace("_REQUEST", "")


def _listing(changes: Sequence[MessageChange]) -> list[str]:
    """The changes as lines, like diff(1): `- ` only in A, `+ ` only in B, `~ ` changed
    (with a line per differing path). An operation one side has and the other lacks
    as a whole is one line."""
    lines: list[str] = []
    index = 0
    while index < len(changes):
        item = changes[index]
        end = index + 1
        while (
            item.change != "changed"
            and end < len(changes)
            and changes[end].operation == item.operation
            and changes[end].change == item.change
        ):
            end += 1
        group = changes[index:end]
        mark = _MARKS[item.change]
        operation = short_name(item.operation)
        if len(group) > 2:
            side = "A" if item.change == "missing" else "B"
            seqs = [m.a_seq if item.change == "missing" else m.b_seq for m in group]
            lines.append(
                f"{mark} {operation}: {len(group)} messages, {side} seq {seqs[0]}-{seqs[-1]} "
                f"({group[0].msg_type} … {group[-1].msg_type})"
            )
        else:
            for one in group:
                arrow = "POS → " if one.sender == "client" else "← "
                where = [f"A seq {one.a_seq}"] if one.a_seq is not None else []
                where += [f"B seq {one.b_seq}"] if one.b_seq is not None else []
                lines.append(
                    f"{mark} {operation}: {arrow}{one.msg_type or 'malformed bytes'} "
                    f"({', '.join(where)})"
                )
                lines += [f"      {f.path}: {_value(f.a)} → {_value(f.b)}" for f in one.fields]
        index = end
    return lines


_MARKS: dict[str, str] = {"missing": "-", "extra": "+", "changed": "~"}


def _number(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _value(value: Any, limit: int = 40) -> str:
    if value in (ABSENT, VOLATILE):
        text = str(value)
    else:
        try:
            text = jsontext.dumps(value)
        except TypeError:
            text = canonical(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
