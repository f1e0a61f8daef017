"""What the auditor's report says, gathered from a store; `html.py` draws it.

`build_report` verifies the hash chain (against a checkpoint when there is one),
then reads the store like every other reader (`open_store`, which also works while
a tap records): the selected transactions with their timelines, the protocol
findings of the selection, and which redaction rules fired in its events. It draws
nothing and decides nothing about exit codes; `p3log.cli.listings` does.

Everything read from the store is kept as the store holds it (payloads are bytes an
attacker may have sent); escaping is the renderer's job.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import duckdb

from p3log.projections.listing import Selection
from p3log.projections.opening import open_store, verify_store
from p3log.projections.rows import FindingRow
from p3log.projections.timeline import Timeline, load_timeline, resolve_key
from p3log.store.errors import StoreBusy, StoreError
from p3log.store.layout import StoreMeta, open_layout
from p3log.store.redact import (
    ESCAPES_RULE,
    HANDSHAKE_RULE,
    MERCHANT_SECRET_RULE,
    PAN_RULE,
    REDACTION_POLICY,
    RESERIALIZED_RULE,
    SECRET_REUSE_RULE,
    UNCHECKED_RULE,
)
from p3log.store.verify import Checkpoint, VerifyReport

__all__ = [
    "CONTENT_LIMIT",
    "MAX_TRANSACTIONS",
    "REDACTION_RULES",
    "ChainStatus",
    "CheckpointUsed",
    "EventContent",
    "RedactionRule",
    "RedactionSummary",
    "Report",
    "ReportTransaction",
    "Selection",
    "build_report",
    "default_checkpoint_path",
]

MAX_TRANSACTIONS: Final = 1000
"""The most transactions one report holds (each timeline costs a few queries, and a
page of thousands is no longer read): a larger selection is refused, to be narrowed."""

CONTENT_LIMIT: Final = 16 * 1024
"""Characters of one event's payload the report shows; `p3log sql` gives the rest."""

REDACTION_RULES: Final = (
    (
        MERCHANT_SECRET_RULE,
        "merchantSecret → HMAC marker",
        "The value of every merchantSecret key, in any spelling (MerchantSecret, "
        "merchant_secret, merchant-secret, escaped, or inside a string that holds JSON), and "
        "of a merchantSecret header or query parameter, is replaced by "
        '"[REDACTED merchantSecret hmac-sha256:<32 hex>]", an HMAC-SHA256 keyed with the '
        "store's key: two secrets can be told apart (or one seen reused) without either "
        "being readable.",
    ),
    (
        SECRET_REUSE_RULE,
        "merchant secret reused → same marker",
        "A value equal to a merchant secret of the same session (a client that sends its "
        "identifier as its secret), anywhere else in that session, is replaced by the same "
        "marker.",
    ),
    (
        PAN_RULE,
        "card numbers masked 6/4",
        "A run of 13 to 19 digits, single spaces or dashes allowed between groups, that passes "
        "the Luhn check keeps its first 6 and last 4 digits; the other digits become *. In "
        "strings, in raw bytes, and as a JSON number (which becomes a string); a "
        "createdTimestamp that is a plausible epoch-milliseconds time is kept.",
    ),
    (
        HANDSHAKE_RULE,
        "handshake credentials → HMAC marker",
        "Handshake headers and URL query parameters whose names hold secret, token, auth, "
        "key, passw, cookie, session, signature or credential, every subprotocol value and a "
        "URL's password are replaced by a keyed fingerprint.",
    ),
    (
        ESCAPES_RULE,
        "\\u escapes decoded",
        "\\u escapes that spell ASCII characters were written as those characters, so the "
        "rules above saw what a JSON reader sees; stored only with another rule.",
    ),
    (
        UNCHECKED_RULE,
        "too costly to check → replaced",
        "A message (or a string in it) that needed more redaction work than the budget, or "
        "nested JSON too deep, was replaced whole by a marker rather than stored unchecked.",
    ),
    (
        RESERIALIZED_RULE,
        "re-serialised after \\u escapes (policy 1)",
        "Under p3log-redact/1: bytes whose \\u escapes hid a key or digits from text "
        "matching were parsed, redacted structurally and written back compactly.",
    ),
)
"""(rule name as in `events.redactions`, title, what it does) for `REDACTION_POLICY`."""


@attrs.frozen
class CheckpointUsed:
    path: Path
    checkpoint: Checkpoint
    found_next_to_store: bool  # not given with --checkpoint: <store>.checkpoint.json


@attrs.frozen
class ChainStatus:
    """The hash chain as `p3log verify` sees it, and the checkpoint it was held to."""

    report: VerifyReport | None  # None: it could not be checked (`not_checked` says why)
    checkpoint: CheckpointUsed | None
    default_checkpoint: Path  # where a checkpoint is looked for when none is given
    not_checked: str | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok

    @property
    def label(self) -> str:
        """OK, BROKEN, or NOT VERIFIED (the chain could not be read)."""
        if self.report is None:
            return "NOT VERIFIED"
        return "OK" if self.report.ok else "BROKEN"


@attrs.frozen
class EventContent:
    """What one event carried: the payload (JSON text) and, where they differ from it,
    the bytes as they arrived (after redaction), decoded for display."""

    payload: str | None
    raw: str | None


@attrs.frozen
class ReportTransaction:
    timeline: Timeline
    contents: Mapping[int, EventContent]  # by seq, for the timeline's events


@attrs.frozen
class RedactionRule:
    name: str
    title: str
    description: str
    events: int  # events of the selection this rule changed


@attrs.frozen
class RedactionSummary:
    policy: str  # the store's (store.json)
    known_policy: bool  # the rules below are this policy's (this p3log's)
    rules: tuple[RedactionRule, ...]
    event_policies: tuple[tuple[str, int], ...]  # policy named by events -> how many
    events: int  # events in the selection
    redacted_events: int  # of which at least one rule changed


@attrs.frozen
class Report:
    store: Path
    meta: StoreMeta
    generated_at_us: int
    selection: Selection
    chain: ChainStatus
    transactions: tuple[ReportTransaction, ...]
    findings: tuple[FindingRow, ...]  # of the selection, in seq order
    redaction: RedactionSummary

    @property
    def outcomes(self) -> tuple[tuple[str, int], ...]:
        """(outcome, transactions) with the most common first."""
        counts: dict[str, int] = {}
        for item in self.transactions:
            outcome = item.timeline.transaction.outcome
            counts[outcome] = counts.get(outcome, 0) + 1
        return tuple(sorted(counts.items(), key=lambda pair: (-pair[1], pair[0])))


def default_checkpoint_path(root: Path) -> Path:
    """Where `p3log demo` leaves a store's checkpoint: `<store>.checkpoint.json` beside it."""
    resolved = root.resolve()
    return resolved.parent / f"{resolved.name}.checkpoint.json"


def build_report(
    root: Path,
    selection: Selection | None = None,
    checkpoint_path: Path | None = None,
    *,
    now_us: int | None = None,
    max_transactions: int = MAX_TRANSACTIONS,
) -> Report:
    """Verify the store at `root` and gather the `selection` of it.

    `checkpoint_path` None uses `<store>.checkpoint.json` next to the store when it
    exists. Raises `StoreError` for what the user has to correct (no store, an
    unreadable checkpoint, a KEY that names no transaction, a selection of more than
    `max_transactions`); a broken chain is not an error, it is what the report shows.
    """
    selection = selection or Selection()
    _, meta = open_layout(root, create=False)
    default = default_checkpoint_path(root)
    used: CheckpointUsed | None = None
    if checkpoint_path is not None:
        used = CheckpointUsed(checkpoint_path, Checkpoint.from_file(checkpoint_path), False)
    elif default.is_file():
        used = CheckpointUsed(default, Checkpoint.from_file(default), True)
    try:
        verified: VerifyReport | None = verify_store(
            root, against=used.checkpoint if used else None
        )
        not_checked = None
    except StoreBusy as exc:
        verified, not_checked = None, str(exc)
    chain = ChainStatus(verified, used, default, not_checked)

    con = open_store(root)
    try:
        return Report(
            store=root.resolve(),
            meta=meta,
            generated_at_us=time.time_ns() // 1000 if now_us is None else now_us,
            selection=selection,
            chain=chain,
            **_gather(con, selection, meta, max_transactions),
        )
    except duckdb.Error as exc:
        raise StoreError(str(exc).strip().splitlines()[0]) from exc
    finally:
        con.close()


def _gather(
    con: duckdb.DuckDBPyConnection, selection: Selection, meta: StoreMeta, limit: int
) -> dict[str, Any]:
    keys = _selected_keys(con, selection)
    if len(keys) > limit:
        raise StoreError(
            f"{selection.describe()}: {len(keys)} transactions, more than a report holds "
            f"({limit}); narrow the selection with --since/--until"
        )
    timelines = [load_timeline(con, key) for key in keys]
    seqs = sorted({event.seq for timeline in timelines for event in timeline.events})
    contents = _contents(con, seqs)
    transactions = tuple(
        ReportTransaction(timeline, {event.seq: contents[event.seq] for event in timeline.events})
        for timeline in timelines
    )
    # The selection's events: all of them, the transaction's, or those recorded in the
    # time range (and every event of a transaction requested in it).
    if selection.whole_store:
        where, params = "TRUE", []
    elif selection.key is not None:
        where, params = "list_contains(?, seq)", [seqs]
    else:
        where, params = f"({selection.in_range('recorded_at')}) OR list_contains(?, seq)", [seqs]
    return {
        "transactions": transactions,
        "findings": _findings(con, selection, keys),
        "redaction": _redaction(con, where, params, meta),
    }


def _selected_keys(con: duckdb.DuckDBPyConnection, selection: Selection) -> list[str]:
    if selection.key is not None:
        return [resolve_key(con, selection.key)]
    where, params = selection.transaction_condition("transactions")
    rows = con.execute(
        f"SELECT transaction_key FROM transactions WHERE {where} "
        "ORDER BY requested_at, request_seq",
        params,
    ).fetchall()
    return [str(row[0]) for row in rows]


def _contents(con: duckdb.DuckDBPyConnection, seqs: Sequence[int]) -> dict[int, EventContent]:
    if not seqs:
        return {}
    rows = con.execute(
        "SELECT seq, payload, CASE WHEN payload IS NULL OR raw <> encode(payload) THEN raw END "
        "FROM events WHERE seq BETWEEN ? AND ? AND list_contains(?, seq)",
        [seqs[0], seqs[-1], list(seqs)],
    ).fetchall()
    return {
        int(seq): EventContent(
            payload=None if payload is None else str(payload),
            raw=None if raw is None else bytes(raw).decode("utf-8", "backslashreplace"),
        )
        for seq, payload, raw in rows
    }


def _findings(
    con: duckdb.DuckDBPyConnection, selection: Selection, keys: Sequence[str]
) -> tuple[FindingRow, ...]:
    """The selected transactions' findings; for a time range also the findings that
    belong to no transaction at events recorded in it; for the whole store, all."""
    columns = ", ".join(f"f.{name}" for name in FindingRow._fields)
    if selection.whole_store:
        sql, params = f"SELECT {columns} FROM protocol_findings f", []
    elif selection.key is not None:
        sql = f"SELECT {columns} FROM protocol_findings f WHERE list_contains(?, transaction_key)"
        params = [list(keys)]
    else:
        sql = (
            f"SELECT {columns} FROM protocol_findings f LEFT JOIN events e USING (seq) "
            "WHERE list_contains(?, f.transaction_key) OR (f.transaction_key IS NULL AND "
            f"{selection.in_range('e.recorded_at')})"
        )
        params = [list(keys)]
    rows = con.execute(sql + " ORDER BY f.seq, f.rule", params).fetchall()
    return tuple(FindingRow(*row) for row in rows)


def _redaction(
    con: duckdb.DuckDBPyConnection, where: str, params: list[Any], meta: StoreMeta
) -> RedactionSummary:
    fired = dict(
        con.execute(
            f"SELECT rule, count(*) FROM (SELECT DISTINCT seq, unnest(redactions) AS rule "
            f"FROM events WHERE ({where})) GROUP BY rule",
            params,
        ).fetchall()
    )
    total, redacted = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE len(redactions) > 0) FROM events WHERE ({where})",
        params,
    ).fetchall()[0]
    policies = con.execute(
        f"SELECT redaction_policy, count(*) FROM events WHERE ({where}) AND redaction_policy "
        "IS NOT NULL GROUP BY ALL ORDER BY 2 DESC, 1",
        params,
    ).fetchall()
    known = {name for name, _, _ in REDACTION_RULES}
    rules = [
        RedactionRule(name, title, description, int(fired.get(name, 0)))
        for name, title, description in REDACTION_RULES
    ]
    rules += [
        RedactionRule(str(name), str(name), "a rule this p3log does not know", int(count))
        for name, count in sorted(fired.items())
        if name not in known
    ]
    return RedactionSummary(
        policy=meta.redaction_policy,
        known_policy=meta.redaction_policy == REDACTION_POLICY,
        rules=tuple(rules),
        event_policies=tuple((str(policy), int(count)) for policy, count in policies),
        events=int(total),
        redacted_events=int(redacted),
    )
