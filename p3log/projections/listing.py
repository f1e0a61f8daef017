"""The rows behind the listings: `p3log transactions`, `p3log findings`, the demo.

A listing's table names each transaction by the shortest key prefix `p3log show`
still resolves, so each row comes with its neighbours in sorted key order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import duckdb

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
    con: duckdb.DuckDBPyConnection, where: Sequence[str] = (), params: Sequence[Any] = ()
) -> Listing:
    """Transactions (alias `t` in `where`) in the order they were requested."""
    columns = ", ".join(f"t.{column}" for column in TRANSACTION_COLUMNS)
    return _listing(
        con,
        f"SELECT {columns}, n.prev_key, n.next_key FROM transactions t "
        f"JOIN ({_KEY_NEIGHBOURS_SQL}) n USING (transaction_key) "
        f"WHERE {' AND '.join(where) or 'TRUE'} ORDER BY t.requested_at, t.request_seq",
        params,
    )


def list_findings(
    con: duckdb.DuckDBPyConnection, rules: Sequence[str] = (), since_seq: int = 0
) -> Listing:
    """Findings (of `rules`, or all; at `since_seq` or later) in the order the rules
    were broken."""
    columns = ", ".join(f"f.{column}" for column in FINDING_COLUMNS)
    return _listing(
        con,
        f"SELECT {columns}, n.prev_key, n.next_key FROM protocol_findings f "
        f"LEFT JOIN ({_KEY_NEIGHBOURS_SQL}) n USING (transaction_key) "
        "WHERE f.seq >= ? "
        + ("AND f.rule IN (SELECT unnest(?)) " if rules else "")
        + "ORDER BY f.seq",
        [since_seq, list(rules)] if rules else [since_seq],
    )


def _listing(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> Listing:
    rows = con.execute(sql, list(params)).fetchall()
    return Listing([row[:-2] for row in rows], [(row[-2], row[-1]) for row in rows])
