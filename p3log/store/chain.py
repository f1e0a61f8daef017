"""The hash chain as SQL: recompute and check it inside DuckDB.

`verify` checks the journal, the index and the sealed segments with these; a live
reader checks the segments it is about to read. Each event's hash is recomputed
from its stored fields (the canonical form of `event.py`, rendered as SQL), its
prev_hash is compared with its predecessor's hash, and its seq with its position.
"""

from __future__ import annotations

import attrs
import duckdb

from p3log.store.event import CANONICAL_FIELDS, GENESIS_HASH, REDACTION_SEPARATOR
from p3log.store.index import query_one

# How each canonical field reads as text in the record-shaped relation.
_FIELD_SQL = {
    "seq": "CAST(seq AS VARCHAR)",
    "recorded_at_us": "CAST(recorded_at_us AS VARCHAR)",
    "mono_ns": "CAST(mono_ns AS VARCHAR)",
    "redactions": f"array_to_string(redactions, '{REDACTION_SEPARATOR}')",
}
# One concat (one allocation per row) rather than a chain of `||`: hashing a million
# events is most of what verify costs.
CANONICAL_SQL = (
    "concat("
    + ", ".join(
        f"CASE WHEN {expr} IS NULL THEN '-;' ELSE concat(strlen({expr}), ':', {expr}, ';') END"
        for expr in (_FIELD_SQL.get(name, name) for name in CANONICAL_FIELDS)
    )
    + ")"
)
# `event.redactions_joinable` in SQL: true when the join above has one reading.
REDACTIONS_JOINABLE_SQL = (
    "coalesce(list_bool_and(list_transform(redactions, lambda r: "
    f"r <> '' AND strpos(r, '{REDACTION_SEPARATOR}') = 0)), true)"
)
# `event_log` rows (the index, a sealed segment) in the journal's record shape.
ROWS_AS_RECORDS = """
SELECT seq, session_id, sender, kind, msg_type, tag, resource, status,
       epoch_us(recorded_at) AS recorded_at_us, mono_ns, payload,
       to_base64(raw) AS raw_b64, parse_note, redaction_policy, redactions, prev_hash, hash
"""


def hashes_sql(records: str) -> str:
    """(seq, prev_hash, hash, content_ok) of a record-shaped relation."""
    return (
        "SELECT seq, prev_hash, hash, "
        f"coalesce(sha256(prev_hash || {CANONICAL_SQL}) = hash AND {REDACTIONS_JOINABLE_SQL}, "
        "false) AS content_ok "
        f"FROM ({records})"
    )


@attrs.frozen
class ChainProblem:
    seq: int  # 0: the store as a whole, not one event
    source: str  # "journal", "index", "checkpoint", a segment's file name, ...
    reason: str

    def __str__(self) -> str:
        return f"seq {self.seq} ({self.source}): {self.reason}"


def chain_problem(con: duckdb.DuckDBPyConnection, table: str, source: str) -> ChainProblem | None:
    """The first event of `table` (a `hashes_sql` relation that should hold seq 1..N)
    whose seq, content or link to its predecessor is wrong."""
    row = query_one(
        con,
        f"""
        SELECT pos, seq, content_ok, prev_hash IS NOT DISTINCT FROM expected_prev FROM (
            SELECT seq, prev_hash, content_ok,
                   row_number() OVER (ORDER BY seq NULLS LAST, hash) AS pos,
                   lag(hash, 1, '{GENESIS_HASH}') OVER (ORDER BY seq NULLS LAST, hash)
                       AS expected_prev
            FROM {table})
        WHERE seq IS DISTINCT FROM pos OR NOT content_ok
           OR prev_hash IS DISTINCT FROM expected_prev
        ORDER BY pos LIMIT 1
        """,
    )
    if row is None:
        return None
    pos, seq, content_ok, linked = row
    if seq is None or seq > pos:
        return ChainProblem(pos, source, "this event is missing or its record is damaged")
    if seq < pos:
        return ChainProblem(seq, source, "this seq appears more than once (an event was inserted)")
    if not content_ok:
        return ChainProblem(seq, source, "the event's content does not match its hash")
    assert not linked
    return ChainProblem(
        seq, source, f"prev_hash does not match the hash of seq {seq - 1} (the chain was rewritten)"
    )


NOT_EVENT_COLUMNS = "does not hold exactly the event columns"
