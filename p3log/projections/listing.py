"""The rows behind the listings (`p3log transactions`, `p3log findings`, the demo) and
the `Selection` they and the auditor's report share.

A listing's table names each transaction by the shortest key prefix `p3log show`
still resolves, so each row comes with its neighbours in sorted key order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Final

import attrs
import duckdb

from p3log.projections.fold import ERROR, INCOMPLETE, RULES
from p3log.settings import OptionError
from p3log.wording import EPOCH, instant_text

TRANSACTION_STATUSES: Final = (
    "UNKNOWN",
    "INITIALIZED",
    "PENDING",
    "ACCEPTED",
    "APPROVED",
    "DECLINED",
    ERROR,
    "ABORTED",
    "INCONCLUSIVE",
)
"""The final `transaction.status` values the protocol names; a transaction's outcome is
one of them, or `INCOMPLETE` (no response recorded), or a status a dialect's server sent."""

OUTCOMES: Final = (*TRANSACTION_STATUSES, INCOMPLETE)


@attrs.frozen
class Selection:
    """Which transactions a listing or the report covers: one (`key`, the report only),
    those requested in [`since_us`, `until_us`) (UTC microseconds, either end open),
    with one of `outcomes` (upper case; empty: any), or all."""

    key: str | None = None
    since_us: int | None = None
    until_us: int | None = None  # the first instant excluded
    outcomes: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.key is not None and (self.since_us is not None or self.until_us is not None):
            raise ValueError("a selection names one transaction or a time range, not both")

    @classmethod
    def from_options(
        cls,
        *,
        key: str | None = None,
        since: str | None = None,
        until: str | None = None,
        outcomes: Iterable[str] = (),
    ) -> Selection:
        """The selection of the command-line options `--transaction KEY`, `--since`,
        `--until` (ISO 8601 dates or datetimes) and `--outcome`; raises `OptionError`."""
        if key is not None and (since is not None or until is not None):
            raise OptionError("--transaction names one transaction: leave out --since and --until")
        return cls(
            key=key,
            since_us=time_bound("--since", since),
            until_us=time_bound("--until", until, upper=True),
            outcomes=tuple(value.upper() for value in outcomes),
        )

    @property
    def whole_store(self) -> bool:
        return (
            self.key is None
            and self.since_us is None
            and self.until_us is None
            and not self.outcomes
        )

    def in_range(self, column: str) -> str:
        """SQL true for instants of `column` in the time range (the bounds are integers)."""
        bounds = ["TRUE"]
        if self.since_us is not None:
            bounds.append(f"epoch_us({column}) >= {int(self.since_us)}")
        if self.until_us is not None:
            bounds.append(f"epoch_us({column}) < {int(self.until_us)}")
        return " AND ".join(bounds)

    def transaction_condition(self, alias: str) -> tuple[str, list[Any]]:
        """SQL (and its parameters) true for the selected rows of `transactions` named
        `alias`, the key aside (a key is resolved, `timeline.resolve_key`)."""
        where = self.in_range(f"{alias}.requested_at")
        if not self.outcomes:
            return where, []
        return f"{where} AND upper({alias}.outcome) IN (SELECT unnest(?))", [list(self.outcomes)]

    def describe(self) -> str:
        if self.key is not None:
            return f"transaction {self.key}"
        if self.whole_store:
            return "every transaction in the store"
        parts = ["transactions requested"]
        if self.since_us is not None:
            parts.append(f"from {_utc(self.since_us)}")
        if self.until_us is not None and self.until_us % 1_000_000 == 0:
            parts.append(f"before {_utc(self.until_us)}")
        elif self.until_us is not None:  # an --until datetime, included
            parts.append(f"up to {_utc(self.until_us - 1)} inclusive")
        text = " ".join(parts) + " (UTC)"
        if self.outcomes:
            text += f" with outcome {' or '.join(self.outcomes)}"
        return text


def time_bound(option: str, value: str | None, *, upper: bool = False) -> int | None:
    """A --since/--until value (ISO 8601 date or datetime; naive is UTC) as UTC
    microseconds: the first instant included, or with `upper` the first one excluded
    (after the datetime, or after the whole day for a date)."""
    if value is None:
        return None
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise OptionError(
                f"{option} {value!r} is not an ISO 8601 date or datetime "
                "(like 2026-11-27 or 2026-11-27T14:30:00Z)"
            ) from None
        at = at.replace(tzinfo=EPOCH.tzinfo) if at.tzinfo is None else at
        step = timedelta(microseconds=1)
    else:
        at = datetime.combine(day, datetime.min.time(), tzinfo=EPOCH.tzinfo)
        step = timedelta(days=1)
    return (at + step - EPOCH if upper else at - EPOCH) // timedelta(microseconds=1)


def _utc(micros: int) -> str:
    return instant_text(micros).removesuffix(".000000")


def known_outcomes(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """`OUTCOMES`, then any other outcome the store holds (a dialect's own status)."""
    held = [
        str(row[0])
        for row in con.execute(
            "SELECT DISTINCT upper(outcome) FROM transactions ORDER BY 1"
        ).fetchall()
    ]
    return (*OUTCOMES, *(outcome for outcome in held if outcome not in OUTCOMES))


def check_outcomes(con: duckdb.DuckDBPyConnection, selection: Selection) -> None:
    """Refuse (`OptionError`) an outcome that is neither one the protocol names nor one
    the store holds: a typo would otherwise select nothing, silently."""
    known = known_outcomes(con)
    unknown = [outcome for outcome in selection.outcomes if outcome not in known]
    if unknown:
        raise OptionError(
            f"--outcome: unknown outcome {', '.join(unknown)}; the outcomes are {', '.join(known)}"
        )


def check_rules(rules: Sequence[str]) -> None:
    """Refuse (`OptionError`) a rule name p3log does not have."""
    unknown = [name for name in rules if name not in RULES]
    if unknown:
        raise OptionError(
            f"--rule: unknown rule {', '.join(unknown)}; the rules are {', '.join(RULES)}"
        )


TRANSACTION_COLUMNS = (
    "transaction_key",
    "session_id",
    "tag",
    "operation",
    "resource",
    "requested_at",
    "completed_at",
    "outcome",
    "transaction_identifier",
    "amount",
    "currency",
    "abort_requested",
    "update_count",
    "action_count",
    "duration_ms",
)
"""The contract's columns of `transactions`: what `p3log transactions` gives."""

FINDING_COLUMNS = ("session_id", "transaction_key", "seq", "rule", "detail")
"""The columns of `protocol_findings`: what `p3log findings` gives."""

_KEY_NEIGHBOURS_SQL = """
    SELECT transaction_key,
           lag(transaction_key) OVER (ORDER BY transaction_key) AS prev_key,
           lead(transaction_key) OVER (ORDER BY transaction_key) AS next_key
    FROM transactions
"""

Neighbours = tuple[str | None, str | None]


@attrs.frozen
class Listing:
    rows: list[tuple[Any, ...]]
    neighbours: list[Neighbours]  # each row's previous and next key, in sorted key order


def list_transactions(
    con: duckdb.DuckDBPyConnection, selection: Selection | None = None
) -> Listing:
    """The `selection`'s transactions (all by default) in the order they were requested."""
    selection = selection or Selection()
    if selection.key is not None:
        raise ValueError("a listing selects by time and outcome, not by key")
    columns = ", ".join(f"t.{column}" for column in TRANSACTION_COLUMNS)
    where, params = selection.transaction_condition("t")
    return _listing(
        con,
        f"SELECT {columns}, n.prev_key, n.next_key FROM transactions t "
        f"JOIN ({_KEY_NEIGHBOURS_SQL}) n USING (transaction_key) "
        f"WHERE {where} ORDER BY t.requested_at, t.request_seq",
        params,
    )


def list_findings(con: duckdb.DuckDBPyConnection, rules: Sequence[str] = ()) -> Listing:
    """Findings (of `rules`, or all) in the order the rules were broken."""
    columns = ", ".join(f"f.{column}" for column in FINDING_COLUMNS)
    return _listing(
        con,
        f"SELECT {columns}, n.prev_key, n.next_key FROM protocol_findings f "
        f"LEFT JOIN ({_KEY_NEIGHBOURS_SQL}) n USING (transaction_key) "
        + ("WHERE f.rule IN (SELECT unnest(?)) " if rules else "")
        + "ORDER BY f.seq",
        [list(rules)] if rules else [],
    )


def _listing(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> Listing:
    rows = con.execute(sql, list(params)).fetchall()
    return Listing([row[:-2] for row in rows], [(row[-2], row[-1]) for row in rows])
