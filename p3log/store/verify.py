"""Check everything a reader of a store trusts against the hash chain, read-only.

- The journal, line by line in file order (a pass in Python, beside DuckDB): each
  line must be the canonical record (`records.decode_canonical`) of the next seq,
  so a line out of place is named, and a line verify accepts has one reading.
- The journal and the index, inside DuckDB: each event's hash is recomputed from
  its stored fields, its prev_hash compared with its predecessor's hash, its seq
  with its position; then the index is compared with the journal seq by seq.
- Every sealed segment under `segments/`: its columns, its rows' store_id this
  store's (a segment copied from another store is damage; one sealed before
  store_id has none), its seq range complete, and each row's content and hash
  equal to the journal's at that seq.
- Whatever the caller adds (`StoreCheck`s: the projection snapshots, ...).

The report names the first seq where anything disagrees. It is computed this way
(`_exact_report`) only for a store that `intact.py` cannot prove intact: the proof
hashes each event once (its journal line, in worker processes, with hashlib) and
compares the index's and segments' rows with the line byte for byte, where the exact
report hashes each of them inside DuckDB. Same checks, same answer for an intact store;
the exact report explains a damaged one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, cast

import attrs
import duckdb
import pyarrow as pa

from p3log.store.chain import (
    NOT_EVENT_COLUMNS,
    ROWS_AS_RECORDS,
    ChainProblem,
    chain_problem,
    hashes_sql,
)
from p3log.store.errors import StoreBusy, StoreCorrupt, StoreError
from p3log.store.event import GENESIS_HASH
from p3log.store.governance import Governance, governance_problems
from p3log.store.index import (
    EVENT_COLUMNS,
    connect,
    journal_relation_sql,
    query_one,
    query_scalar,
    sql_string,
)
from p3log.store.indexer import damaged_index, index_open_error
from p3log.store.intact import (
    RangeProof,
    RangeTask,
    hash_array,
    line_ranges,
    prove_range,
    prove_ranges,
)
from p3log.store.journal import segment_first_seq, segment_paths, stray_paths
from p3log.store.layout import StoreLayout, StoreMeta, open_layout
from p3log.store.records import RECORD_COLUMNS, RecordError, decode_canonical
from p3log.store.segments import Segment, all_segments, segment_problem

__all__ = ["ChainProblem", "Checkpoint", "StoreCheck", "VerifyReport", "verify_store"]

StoreCheck = Callable[[duckdb.DuckDBPyConnection, Path], ChainProblem | None]
"""A further check `verify_store` runs on its connection, once the journal's and the
index's hashes are loaded (temp table `journal_hashes`; the index attached as `idx`
unless it is missing or damaged)."""


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


def verify_store(
    root: Path, against: Checkpoint | None = None, checks: Sequence[StoreCheck] = ()
) -> VerifyReport:
    layout, meta = open_layout(root, create=False)
    with tempfile.TemporaryDirectory(prefix="p3log-verify-") as spill:
        # The proof hashes each event once; only a store it cannot prove intact pays
        # for the exact report, which names the first seq that disagrees.
        report = _intact_report(layout, meta, against, checks, Path(spill))
        if report is None:
            report = _exact_report(layout, meta, against, checks, Path(spill))
    return report


def _exact_report(
    layout: StoreLayout,
    meta: StoreMeta,
    against: Checkpoint | None,
    checks: Sequence[StoreCheck],
    spill: Path,
) -> VerifyReport:
    """Every problem verify can name, each at its first seq: the journal, the index and
    the segments each hashed inside DuckDB, and the journal's lines read in Python."""
    root = layout.root
    with ThreadPoolExecutor(max_workers=1) as pool:
        # orjson holds the GIL, DuckDB releases it: the line pass runs beside the SQL.
        lines = pool.submit(journal_line_problem, layout.journal_dir)
        with _connect(spill) as con:
            problems = [_load_hashes(con, layout)]
            problems += [
                chain_problem(con, "journal_hashes", "journal"),
                chain_problem(con, "index_hashes", "index"),
                _index_journal_problem(con),
                _segments_problem(con, all_segments(root), meta.store_id),
                *(check(con, root) for check in checks),
            ]
            if against is not None:
                problems.append(_checkpoint_problem(con, meta, against))
            pinned = (against.count, against.governance) if against else None
            problems += [
                ChainProblem(*found) for found in governance_problems(layout, meta, pinned)
            ]
            count, head_hash = _head(con)
            indexed = int(query_scalar(con, "SELECT count(*) FROM index_hashes"))
        problems.append(lines.result())
    found = [problem for problem in problems if problem is not None]
    return VerifyReport(
        store_id=meta.store_id,
        count=count,
        head_hash=head_hash,
        indexed=indexed,
        problem=min(found, key=lambda problem: problem.seq) if found else None,
    )


def make_checkpoint(root: Path, checks: Sequence[StoreCheck] = ()) -> Checkpoint:
    """A checkpoint of the store's current head; refuses a store that does not verify."""
    report = verify_store(root, checks=checks)
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


def journal_line_problem(journal_dir: Path) -> ChainProblem | None:
    """The first place where the journal, read in file order, is not the canonical
    record of the next seq: the journal's physical order is its seq order."""
    for path in stray_paths(journal_dir):
        return ChainProblem(0, "journal", f"{path.name} is not a journal segment")
    expected = 1
    for path in segment_paths(journal_dir):
        if segment_first_seq(path) != expected:
            return ChainProblem(expected, "journal", f"{path.name} should start at seq {expected}")
        with path.open("rb") as segment:
            problem = _segment_line_problem(path.name, segment, expected)
        if isinstance(problem, ChainProblem):
            return problem
        expected = problem
    return None


def _segment_line_problem(name: str, lines: BinaryIO, expected: int) -> ChainProblem | int:
    """The first problem in one journal segment, or the seq the next one starts at."""
    for line in lines:  # split at b"\n" only, each line with its newline
        if not line.endswith(b"\n"):
            return ChainProblem(expected, "journal", f"{name} ends in a torn record")
        try:
            seq = decode_canonical(line)["seq"]
        except RecordError as exc:
            return ChainProblem(expected, "journal", f"the record in its place: {exc}")
        if seq != expected:
            return ChainProblem(
                expected,
                "journal",
                f"{name} holds seq {seq} where seq {expected} belongs (records out of order)",
            )
        expected += 1
    return expected


def _load_hashes(con: duckdb.DuckDBPyConnection, layout: StoreLayout) -> ChainProblem | None:
    """Temp tables (seq, prev_hash, hash, content_ok) for the journal and the index.
    A damaged index file is the problem returned, and is checked as if it were empty."""
    journal = journal_relation_sql(layout.journal_dir, ignore_errors=True) or _EMPTY
    index, problem = f"SELECT * FROM ({journal}) WHERE false", None
    if layout.index_path.exists():
        try:
            con.execute(f"ATTACH {sql_string(str(layout.index_path))} AS idx (READ_ONLY)")
            # An index whose writer was killed while creating it has no table yet: like a
            # missing one it holds nothing, and the next open builds it.
            if _has_event_log(con):
                if _columns(con, "DESCRIBE idx.event_log") == list(EVENT_COLUMNS.items()):
                    index = f"{ROWS_AS_RECORDS} FROM idx.event_log"
                else:  # checked as an empty one, as a damaged file is
                    problem = ChainProblem(0, "index", NOT_EVENT_COLUMNS)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            error = index_open_error(layout, exc)
            if not isinstance(error, StoreCorrupt):
                raise StoreBusy(
                    f"store {layout.root} is open for recording by another process; "
                    "verify it after the recording stops"
                ) from exc
            problem = ChainProblem(0, "index", str(error))
        except duckdb.Error as exc:
            problem = ChainProblem(0, "index", str(damaged_index(layout, exc)))
    for table, source in (("journal_hashes", journal), ("index_hashes", index)):
        con.execute(f"CREATE TEMP TABLE {table} AS {hashes_sql(source)}")
    return problem


def _columns(con: duckdb.DuckDBPyConnection, describe: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(describe).fetchall()]


# A journal with no segment yet (a store created, then killed before its first event):
# no rows, but every record column the hash check reads.
def _has_event_log(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        query_scalar(
            con,
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE database_name = 'idx' AND table_name = 'event_log'",
        )
    )


_EMPTY = "SELECT {} WHERE false".format(
    ", ".join(f"NULL::{kind} AS {name}" for name, kind in RECORD_COLUMNS.items())
)


def _segments_problem(
    con: duckdb.DuckDBPyConnection, segments: list[Segment], store_id: str
) -> ChainProblem | None:
    """Each sealed segment must have the event columns and hold exactly seq
    first..last of its name, each row's content and hash the journal's at that seq.
    The readable ones are checked in one query (DuckDB reads them in parallel)."""
    problems: list[ChainProblem] = []
    readable: dict[str, Segment] = {}
    for segment in segments:
        columns = segment_problem(con, str(segment.path), store_id)
        if columns is None:
            readable[str(segment.path)] = segment
        else:
            problems.append(ChainProblem(segment.first_seq, segment.path.name, columns))
    if readable:
        try:
            problems += _rows_problems(con, readable)
        except duckdb.Error as exc:  # damaged beyond its metadata: name the file
            problems += [
                ChainProblem(segment.first_seq, segment.path.name, problem)
                for segment in readable.values()
                if (problem := _unreadable(con, segment)) is not None
            ] or [ChainProblem(segments[0].first_seq, "segments", _first_line(exc))]
    return min(problems, key=lambda problem: problem.seq) if problems else None


def _rows_problems(
    con: duckdb.DuckDBPyConnection, segments: dict[str, Segment]
) -> list[ChainProblem]:
    in_order = segments_in_order(con, list(segments.values()))
    problems = [
        ChainProblem(
            segment.first_seq,
            segment.path.name,
            f"does not hold seq {segment.first_seq} to {segment.last_seq}, each once, in order",
        )
        for segment in segments.values()
        if not in_order.get(str(segment.path), False)
    ]
    # ... and each segment's rows are hashed and joined with the journal's hashes in its
    # range only: one join over every segment holds more than verify's memory cap.
    for path, segment in segments.items():
        rows = f"{ROWS_AS_RECORDS} FROM read_parquet({sql_string(path)})"
        differs = query_one(
            con,
            f"""
            SELECT min(s.seq) FROM ({hashes_sql(rows)}) s
            LEFT JOIN (FROM journal_hashes WHERE seq BETWEEN ? AND ?) j USING (seq)
            WHERE NOT s.content_ok OR j.content_ok IS NOT true
               OR s.hash IS DISTINCT FROM j.hash OR s.prev_hash IS DISTINCT FROM j.prev_hash
            """,
            [segment.first_seq, segment.last_seq],
        )
        if differs is not None and differs[0] is not None:
            reason = "this row is not the journal's event"
            problems.append(ChainProblem(differs[0], segment.path.name, reason))
    return problems


def _unreadable(con: duckdb.DuckDBPyConnection, segment: Segment) -> str | None:
    try:
        con.execute(f"SELECT * FROM read_parquet({sql_string(str(segment.path))})").fetchall()
    except duckdb.Error as exc:
        return f"cannot be read as Parquet ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]


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


# Below this many journal bytes the proof runs in this process: starting a pool
# costs more than it saves.
PARALLEL_BYTES = 64 * 1024 * 1024
# The most journal bytes one range of the proof holds: enough ranges for the workers
# to end together, few enough that each range's start-up (a DuckDB connection) is lost.
RANGE_BYTES = 32 * 1024 * 1024


def _connect(spill: Path) -> duckdb.DuckDBPyConnection:
    """verify's DuckDB: memory-capped, spilling into a private directory (never the
    store: verify writes nothing there, and an in-memory database would spill to ./.tmp)."""
    con = connect()
    con.execute(f"SET temp_directory = {sql_string(str(spill))}")
    return con


def _intact_report(
    layout: StoreLayout,
    meta: StoreMeta,
    against: Checkpoint | None,
    checks: Sequence[StoreCheck],
    spill: Path,
) -> VerifyReport | None:
    """The report of a store proven intact with one hash per event (`intact.py`); None
    if it cannot be (damage, or what the proof does not cover), for `_exact_report`."""
    if stray_paths(layout.journal_dir):
        return None
    paths = segment_paths(layout.journal_dir)
    firsts = [segment_first_seq(path) for path in paths]
    if firsts and firsts[0] != 1:
        return None
    with _connect(spill) as con:
        index = _attach_index(con, layout)
        if index is False:
            return None
        segments = all_segments(layout.root)
        if any(segment_problem(con, str(s.path), meta.store_id) for s in segments):
            return None
        index_path = str(layout.index_path) if index else None
        segment_files = tuple((str(s.path), s.first_seq, s.last_seq) for s in segments)
        sizes = [path.stat().st_size for path in paths]
        # Ranges of whole lines, at most RANGE_BYTES each: one large segment (an import
        # writes one) is shared out over the workers as well as many small ones.
        tasks = [
            RangeTask(str(path), start, end, index_path, segment_files, str(spill))
            for path, size in zip(paths, sizes, strict=True)
            for start, end in line_ranges(path, -(-size // RANGE_BYTES))
        ]
        if sum(sizes) >= PARALLEL_BYTES and len(tasks) > 1:
            proofs = prove_ranges(tasks, min(len(tasks), os.cpu_count() or 1))
        else:
            proofs = [prove_range(task) for task in tasks]
        hashes = _chained_hashes(tasks, proofs)
        if hashes is None or not _segments_hold_their_ranges(con, segments, len(hashes)):
            return None
        valid = cast(list[RangeProof], proofs)
        indexed = _indexed_prefix(con, index, valid)
        if indexed is None:
            return None
        count = len(hashes)
        prevs = pa.concat_arrays([pa.array([GENESIS_HASH], pa.string()), hashes.slice(0, count)])
        con.register(
            "_p3log_hashes",
            pa.table(
                {
                    "seq": pa.array(range(1, count + 1), pa.int64()),
                    "prev_hash": prevs.slice(0, count),
                    "hash": hashes,
                }
            ),
        )
        con.execute(
            "CREATE TEMP TABLE journal_hashes AS "
            "SELECT seq, prev_hash, hash, true AS content_ok FROM _p3log_hashes"
        )
        con.unregister("_p3log_hashes")
        del prevs
        problems = [check(con, layout.root) for check in checks]
        if against is not None:
            problems.append(_checkpoint_problem(con, meta, against))
    pinned = (against.count, against.governance) if against else None
    configurations = [found for proof in valid for found in proof.governance]
    problems += [
        ChainProblem(*found) for found in governance_problems(layout, meta, pinned, configurations)
    ]
    found = [problem for problem in problems if problem is not None]
    return VerifyReport(
        store_id=meta.store_id,
        count=count,
        head_hash=valid[-1].last_hash if valid else GENESIS_HASH,
        indexed=indexed,
        problem=min(found, key=lambda problem: problem.seq) if found else None,
    )


def _attach_index(con: duckdb.DuckDBPyConnection, layout: StoreLayout) -> bool | None:
    """Attach the index as `idx`: True if it has events, None if there is none (or no
    table yet), False if it cannot be read (the exact report says why)."""
    if not layout.index_path.exists():
        return None
    try:
        con.execute(f"ATTACH {sql_string(str(layout.index_path))} AS idx (READ_ONLY)")
        return True if _has_event_log(con) else None
    except duckdb.Error:
        return False


def _chained_hashes(
    tasks: list[RangeTask], proofs: list[RangeProof | None]
) -> pa.StringArray | None:
    """Every event's hash in seq order, if every range was proven, each file starts at
    the seq of its name, and each range starts where the one before ends and links to
    its last hash."""
    seq, prev = 1, GENESIS_HASH
    for task, proof in zip(tasks, proofs, strict=True):
        if proof is None or proof.first_seq != seq or proof.first_prev != prev:
            return None
        if task.start == 0 and segment_first_seq(Path(task.path)) != seq:
            return None
        seq, prev = seq + proof.count, proof.last_hash
    return cast(pa.StringArray, hash_array(b"".join(p.hashes for p in proofs if p is not None)))


def segments_in_order(con: duckdb.DuckDBPyConnection, segments: list[Segment]) -> dict[str, bool]:
    """For each segment's path, whether it holds exactly seq first..last of its name,
    each once and in order. Only the seq column is read (Parquet is columnar)."""
    if not segments:
        return {}
    files = f"[{', '.join(sql_string(str(segment.path)) for segment in segments)}]"
    # In order from first to last: each row's seq minus its place in the file is first.
    rows = con.execute(
        "SELECT filename, count(*), count(seq), min(seq - file_row_number), "
        f"max(seq - file_row_number) FROM read_parquet({files}, filename = true, "
        "file_row_number = true) GROUP BY filename"
    ).fetchall()
    counts = {path: row for path, *row in rows}
    return {
        str(s.path): counts.get(str(s.path))
        == [s.last_seq - s.first_seq + 1, s.last_seq - s.first_seq + 1, s.first_seq, s.first_seq]
        for s in segments
    }


def _segments_hold_their_ranges(
    con: duckdb.DuckDBPyConnection, segments: list[Segment], count: int
) -> bool:
    """Each segment holds exactly seq first..last of its name, each once and in order,
    within the journal (the proof compared the rows in that range with the journal's)."""
    if any(segment.first_seq < 1 or segment.last_seq > count for segment in segments):
        return False
    try:
        return all(segments_in_order(con, segments).values())
    except duckdb.Error:  # a row group the proof's seq filter skipped: the exact report names it
        return False


def _indexed_prefix(
    con: duckdb.DuckDBPyConnection, index: bool | None, proofs: list[RangeProof]
) -> int | None:
    """How many events the index holds, if they are exactly the journal's first ones
    (the proof matched them range by range)."""
    matched, short = 0, False
    for proof in proofs:
        if proof.indexed and short:
            return None
        matched += proof.indexed
        short = proof.indexed < proof.count
    if not index:
        return 0 if matched == 0 else None
    try:
        rows = query_one(con, "SELECT count(*), coalesce(max(seq), 0) FROM idx.event_log")
    except duckdb.Error:
        return None
    return matched if rows == (matched, matched) else None
