"""Recompute the hash chain over the journal and the index, inside DuckDB.

Each event's hash is recomputed from its stored fields (the canonical form of
`event.py`, rendered as SQL), its prev_hash is compared with its predecessor's hash,
and its seq with its position; then the index is compared with the journal seq by
seq. The report names the first seq where anything disagrees. Read-only: verify
never changes the store it checks.

Doing this in SQL rather than in a Python loop is what makes a million events take
seconds: DuckDB hashes in parallel and streams the journal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import attrs
import duckdb

from p3log.store.errors import StoreBusy, StoreCorrupt, StoreError
from p3log.store.event import CANONICAL_FIELDS, GENESIS_HASH
from p3log.store.governance import Governance, governance_problems
from p3log.store.index import connect, journal_relation_sql, query_one, query_scalar, sql_string
from p3log.store.layout import StoreLayout, StoreMeta, open_layout

# How each canonical field reads as text in the normalized relation.
_FIELD_SQL = {
    "seq": "CAST(seq AS VARCHAR)",
    "recorded_at_us": "CAST(recorded_at_us AS VARCHAR)",
    "mono_ns": "CAST(mono_ns AS VARCHAR)",
    "redactions": "array_to_string(redactions, ',')",
}
_CANONICAL_SQL = " || ".join(
    f"coalesce(CAST(strlen({expr}) AS VARCHAR) || ':' || {expr} || ';', '-;')"
    for expr in (_FIELD_SQL.get(name, name) for name in CANONICAL_FIELDS)
)
# The index's columns in the journal's record shape.
_INDEX_AS_RECORDS = """
SELECT seq, session_id, sender, kind, msg_type, tag, resource, status,
       epoch_us(recorded_at) AS recorded_at_us, mono_ns, payload,
       to_base64(raw) AS raw_b64, parse_note, redaction_policy, redactions, prev_hash, hash
FROM idx.event_log
"""


@attrs.frozen
class ChainProblem:
    seq: int
    source: str  # "journal", "index" or "checkpoint"
    reason: str

    def __str__(self) -> str:
        return f"seq {self.seq} ({self.source}): {self.reason}"


@attrs.frozen
class VerifyReport:
    store_id: str
    count: int  # events in the journal
    head_hash: str
    indexed: int  # of which are in the index
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


@attrs.frozen
class Checkpoint:
    """What an auditor keeps outside the store to prove later that it only grew."""

    store_id: str
    count: int
    head_hash: str
    created_at_us: int
    governance: Governance | None = None  # what governed redaction (None: older checkpoint)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), indent=2) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> Checkpoint:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                store_id=str(data["store_id"]),
                count=int(data["count"]),
                head_hash=str(data["head_hash"]),
                created_at_us=int(data["created_at_us"]),
                governance=Governance(**data["governance"]) if "governance" in data else None,
            )
        except OSError as exc:
            raise StoreError(f"cannot read checkpoint {path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path} is not a p3log checkpoint: {exc}") from exc


def verify_store(root: Path, against: Checkpoint | None = None) -> VerifyReport:
    layout, meta = open_layout(root, create=False)
    with connect() as con:
        _load_hashes(con, layout)
        problems = [
            _chain_problem(con, "journal_hashes", "journal"),
            _chain_problem(con, "index_hashes", "index"),
            _index_journal_problem(con),
        ]
        if against is not None:
            problems.append(_checkpoint_problem(con, meta, against))
        pinned = (against.count, against.governance) if against else None
        problems += [ChainProblem(*found) for found in governance_problems(layout, meta, pinned)]
        count, head_hash = _head(con)
        indexed = int(query_scalar(con, "SELECT count(*) FROM index_hashes"))
    found = [problem for problem in problems if problem is not None]
    return VerifyReport(
        store_id=meta.store_id,
        count=count,
        head_hash=head_hash,
        indexed=indexed,
        problem=min(found, key=lambda problem: problem.seq) if found else None,
    )


def make_checkpoint(root: Path) -> Checkpoint:
    """A checkpoint of the store's current head; refuses a chain that does not verify."""
    report = verify_store(root)
    if report.problem is not None:
        raise StoreCorrupt(f"not checkpointing a store that fails verification: {report.problem}")
    _, meta = open_layout(root, create=False)
    return Checkpoint(
        report.store_id,
        report.count,
        report.head_hash,
        time.time_ns() // 1000,
        Governance.of_meta(meta),
    )


def _load_hashes(con: duckdb.DuckDBPyConnection, layout: StoreLayout) -> None:
    """Temp tables (seq, prev_hash, hash, content_ok) for the journal and the index."""
    journal = journal_relation_sql(layout.journal_dir, ignore_errors=True)
    index = _INDEX_AS_RECORDS
    if layout.index_path.exists():
        try:
            con.execute(f"ATTACH {sql_string(str(layout.index_path))} AS idx (READ_ONLY)")
        except duckdb.IOException as exc:
            raise StoreBusy(
                f"store {layout.root} is open for recording by another process; "
                "verify it after the recording stops"
            ) from exc
    else:
        index = f"SELECT * FROM ({journal or _EMPTY}) WHERE false"
    for table, source in (("journal_hashes", journal or _EMPTY), ("index_hashes", index)):
        con.execute(
            f"""
            CREATE TEMP TABLE {table} AS
            SELECT seq, prev_hash, hash,
                   coalesce(sha256(prev_hash || {_CANONICAL_SQL}) = hash, false) AS content_ok
            FROM ({source})
            """
        )


_EMPTY = "SELECT NULL::BIGINT AS seq, NULL AS prev_hash, NULL AS hash WHERE false"


def _chain_problem(con: duckdb.DuckDBPyConnection, table: str, source: str) -> ChainProblem | None:
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


def _index_journal_problem(con: duckdb.DuckDBPyConnection) -> ChainProblem | None:
    """The index must be a prefix of the journal; the journal may run ahead of it."""
    row = query_one(
        con,
        """
        SELECT coalesce(i.seq, j.seq), i.seq IS NULL, j.seq IS NULL
        FROM index_hashes i FULL OUTER JOIN journal_hashes j ON i.seq = j.seq
        WHERE i.hash IS DISTINCT FROM j.hash
          AND NOT (i.seq IS NULL AND j.seq > (SELECT coalesce(max(seq), 0) FROM index_hashes))
        ORDER BY 1 LIMIT 1
        """,
    )
    if row is None:
        return None
    seq, missing_from_index, missing_from_journal = row
    if missing_from_journal:
        reason = "in the index but not in the journal"
    elif missing_from_index:
        reason = "in the journal but missing from the index"
    else:
        reason = "the index and the journal hold different events"
    return ChainProblem(seq, "index", reason)


def _checkpoint_problem(
    con: duckdb.DuckDBPyConnection, meta: StoreMeta, checkpoint: Checkpoint
) -> ChainProblem | None:
    if checkpoint.store_id != meta.store_id:
        return ChainProblem(0, "checkpoint", "the checkpoint belongs to a different store")
    row = query_one(con, "SELECT hash FROM journal_hashes WHERE seq = ?", [checkpoint.count])
    if checkpoint.count and row is None:
        return ChainProblem(
            checkpoint.count, "checkpoint", "the log is shorter than when it was checkpointed"
        )
    if checkpoint.count and row is not None and row[0] != checkpoint.head_hash:
        return ChainProblem(
            checkpoint.count,
            "checkpoint",
            "the hash differs from the checkpoint's: the log was changed, not only appended to",
        )
    return None


def _head(con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    row = query_one(
        con, f"SELECT count(*), coalesce(arg_max(hash, seq), '{GENESIS_HASH}') FROM journal_hashes"
    )
    assert row is not None
    return int(row[0]), str(row[1])
