"""The proof that a store is intact, with each event hashed once (verify's fast path).

The exact report (`verify.py`) hashes every event three times inside DuckDB (its
journal line, its index row, its sealed segment row) at about 3 µs of CPU each
(DuckDB's SHA-256 does not use the CPU's SHA instructions), besides the Python pass
that checks each line's spelling. Here the journal is read once, in Python, in byte
ranges shared out over a pool of processes (a range starts and ends at a line's end,
so an imported store's one large segment is shared out as well as many small ones):

- each line must be the canonical record (`decode_canonical`) of the next seq, its
  hash the SHA-256 of its prev_hash and canonical form (`hashlib`: ~1 µs), its
  prev_hash the hash of the line before;
- the index's rows and the sealed segments' rows at those seqs are compared with the
  journal's, byte for byte, a batch of lines at a time: DuckDB renders each row's
  canonical form (`chain.CANONICAL_SQL`, the very text the exact report hashes) with
  its prev_hash and hash, and they must equal the line's. Equal content under an equal
  hash is what hashing the row again proved, so nothing is hashed twice.

What spans ranges (a range's first seq and prev_hash against the end of the one
before, the index being a prefix of the journal, each segment holding its seq range
once) is checked by the caller (`verify.py`). A proof either holds, or is None: this
module never explains damage. Then verify computes its exact report the way it always
has, so every report keeps its wording, and only an intact store is fast.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import attrs
import duckdb
import pyarrow as pa

from p3log.store.chain import CANONICAL_SQL, REDACTIONS_JOINABLE_SQL, ROWS_AS_RECORDS
from p3log.store.event import record_canonical_bytes
from p3log.store.governance import GOVERNANCE_KIND
from p3log.store.index import connect, sql_string
from p3log.store.records import RecordError, decode_canonical

HASH_CHARS = 64  # a SHA-256 in hex, as every record spells its hash
# Lines compared with the index and the segments in one query: large enough that a
# query's cost is spread thin, small enough that a worker holds ~12 MB of forms.
BATCH_LINES = 8_192


@attrs.frozen
class RangeTask:
    """Whole lines of one journal segment file, and what else holds events."""

    path: str
    start: int  # the byte offset of the range's first line
    end: int  # just past its last line's newline
    index_path: str | None  # the index, if it has an event table
    segment_files: tuple[tuple[str, int, int], ...]  # (path, first, last) of every segment
    spill: str  # where DuckDB may spill: verify's private directory, never the store or ./.tmp


@attrs.frozen
class RangeProof:
    """A range found intact: its lines hold seq first_seq.. in order, each hash right."""

    first_seq: int
    first_prev: str  # the first line's prev_hash (the caller links it to the range before)
    hashes: bytes  # each line's hash (HASH_CHARS ASCII characters), in seq order
    indexed: int  # the index's rows equal to these lines, from first_seq on
    governance: list[tuple[int, str | None]]  # (seq, payload) of each configuration event

    @property
    def count(self) -> int:
        return len(self.hashes) // HASH_CHARS

    @property
    def last_hash(self) -> str:
        return self.hashes[-HASH_CHARS:].decode("ascii")


def line_ranges(path: Path, pieces: int) -> list[tuple[int, int]]:
    """`path` cut into up to `pieces` byte ranges of about equal size, each made of
    whole lines (a cut moves on to just past the next newline)."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as segment:
        for k in range(1, pieces):
            segment.seek(max(size * k // pieces, cuts[-1]))
            segment.readline()  # to the end of the line the cut fell in
            if (cut := segment.tell()) < size and cut > cuts[-1]:
                cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], size], strict=True))


def prove_range(task: RangeTask) -> RangeProof | None:
    """The proof that one range of journal lines, and the index's and segments' rows at
    its seqs, are intact; None if anything in it is not (verify then explains what)."""
    hashes: list[str] = []
    governance: list[tuple[int, str | None]] = []
    first: _Batch | None = None
    indexed, short = 0, False
    try:
        with connect() as con, Path(task.path).open("rb") as segment:
            con.execute("SET threads = 1")  # the pool is the parallelism
            con.execute(f"SET temp_directory = {sql_string(task.spill)}")
            if task.index_path is not None:
                con.execute(f"ATTACH {sql_string(task.index_path)} AS idx (READ_ONLY)")
            segment.seek(task.start)
            for lines in _batches(segment, task.end - task.start):
                batch = _read_batch(lines, hashes[-1] if hashes else None, governance)
                if batch is None or (first is not None and batch.first_seq != first.seq_after):
                    return None
                first = first or batch
                if task.index_path is not None:
                    rows = _canonical_rows(con, "idx.event_log", batch.first_seq, batch.last_seq)
                    # The index may stop short of the journal, never go beyond it.
                    if (rows.num_rows and short) or not _equal(
                        rows, batch.table.slice(0, rows.num_rows)
                    ):
                        return None
                    indexed += rows.num_rows
                    short = rows.num_rows < len(batch.hashes)
                if not _segments_equal(con, task.segment_files, batch):
                    return None
                hashes += batch.hashes
                first = attrs.evolve(first, seq_after=batch.seq_after)
    except (OSError, duckdb.Error):
        return None
    if first is None:
        return None  # an empty range: the caller never makes one, and files are never empty
    return RangeProof(
        first.first_seq, first.first_prev, "".join(hashes).encode("ascii"), indexed, governance
    )


@attrs.frozen
class _Batch:
    """Consecutive journal lines found canonical, chained and each hash right."""

    first_seq: int
    first_prev: str
    seq_after: int  # the seq the next line must hold
    hashes: list[str]
    table: pa.Table  # (prev_hash, form: the canonical form, hash) of each line

    @property
    def last_seq(self) -> int:
        return self.seq_after - 1


def _batches(segment: BinaryIO, size: int) -> Iterator[list[bytes]]:
    """The next `size` bytes of `segment` as lists of up to BATCH_LINES lines (split at
    b"\n" only, each line with its newline; a torn last line as it is)."""
    batch: list[bytes] = []
    for line in segment:
        batch.append(line)
        size -= len(line)
        if len(batch) == BATCH_LINES or size <= 0:
            yield batch
            batch = []
        if size <= 0:
            return
    if batch:
        yield batch


def _read_batch(
    lines: list[bytes], prev: str | None, governance: list[tuple[int, str | None]]
) -> _Batch | None:
    """The lines as a batch, if each is the canonical record of the next seq (the first
    line's seq is taken as it is), links to the one before (the first to `prev`, if
    given) and holds the hash of its prev_hash and canonical form."""
    prevs: list[str] = []
    forms: list[bytes] = []
    hashes: list[str] = []
    seq = first_prev = None
    try:
        for line in lines:
            if not line.endswith(b"\n"):
                return None
            record = decode_canonical(line)
            if seq is None:
                seq, first_prev = record["seq"], record["prev_hash"]
            form = record_canonical_bytes(record)
            digest = hashlib.sha256(record["prev_hash"].encode() + form).hexdigest()
            if (
                record["seq"] != seq
                or digest != record["hash"]
                or record["prev_hash"] != (hashes[-1] if hashes else prev or first_prev)
            ):
                return None
            if record["kind"] == GOVERNANCE_KIND and record["sender"] == "tap":
                governance.append((seq, record["payload"]))
            prevs.append(record["prev_hash"])
            forms.append(form)
            hashes.append(digest)
            seq += 1
    except (RecordError, UnicodeError):
        return None
    if seq is None or first_prev is None:
        return None
    # prev_hash apart from the form: a longer prev_hash could take in the form's start.
    table = pa.table(
        {
            "prev_hash": _joined_array([prev.encode() for prev in prevs], pa.large_string()),
            "form": _joined_array(forms, pa.large_binary()),
            "hash": hash_array(hashes),
        }
    )
    return _Batch(seq - len(hashes), first_prev, seq, hashes, table)


def _joined_array(items: list[bytes], kind: pa.DataType) -> pa.Array:
    """The items as an Arrow array of `kind` (large binary or large UTF-8 text), built
    from one join: pa.array would import pandas (a third of a second in each worker)
    and convert item by item."""
    offsets = array.array("q", itertools.accumulate(map(len, items), initial=0))
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(items))]
    return pa.Array.from_buffers(kind, len(items), buffers)


def hash_array(hashes: Sequence[str] | bytes) -> pa.Array:
    """Hashes (HASH_CHARS characters each, or their ASCII bytes end to end) as strings."""
    data = hashes if isinstance(hashes, bytes) else "".join(hashes).encode("ascii")
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(HASH_CHARS), len(data) // HASH_CHARS, [None, pa.py_buffer(data)]
    )
    return fixed.cast(pa.string())


def _canonical_rows(con: duckdb.DuckDBPyConnection, table: str, first: int, last: int) -> pa.Table:
    """(prev_hash, form, hash) of the rows of `table` (event_log columns) with seq
    first..last, in the order they are stored; form is the canonical form (NULL where
    it would have two readings)."""
    return con.sql(
        f"SELECT prev_hash, CASE WHEN {REDACTIONS_JOINABLE_SQL} THEN encode({CANONICAL_SQL}) "
        "END AS form, hash "
        f"FROM ({ROWS_AS_RECORDS} FROM {table} WHERE seq BETWEEN {int(first)} AND {int(last)})"
    ).to_arrow_table()


def _segments_equal(
    con: duckdb.DuckDBPyConnection, segment_files: Sequence[tuple[str, int, int]], batch: _Batch
) -> bool:
    """Whether the sealed segments' rows at the batch's seqs are the batch's lines."""
    first, last = batch.first_seq, batch.last_seq
    overlapping = [
        (path, max(lo, first), min(hi, last))
        for path, lo, hi in segment_files
        if lo <= last and hi >= first
    ]
    if not overlapping:
        return True
    files = ", ".join(sql_string(path) for path, _, _ in overlapping)
    wanted = [seq - first for _, lo, hi in overlapping for seq in range(lo, hi + 1)]
    rows = _canonical_rows(con, f"read_parquet([{files}])", first, last)
    return rows.num_rows == len(wanted) and _equal(rows, batch.table.take(pa.array(wanted)))


def _equal(rows: pa.Table, expected: pa.Table) -> bool:
    """Whether the rows are the expected ones, column by column, in order."""
    return all(
        rows.column(name).cast(column.type).equals(column)
        for name, column in zip(expected.column_names, expected.columns, strict=True)
    )


def prove_ranges(tasks: Sequence[RangeTask], workers: int) -> list[RangeProof | None]:
    """`prove_range` of each task, over `workers` processes (the line pass is Python and
    holds the GIL), each given about the same number of bytes. Each worker is
    `python -m p3log.store.intact`, given its tasks on stdin: unlike multiprocessing's
    spawn, it never re-imports the caller's script."""
    package_root = Path(__file__).resolve().parents[2]
    shares: list[list[int]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for i in sorted(range(len(tasks)), key=lambda i: tasks[i].start - tasks[i].end):
        lightest = loads.index(min(loads))  # the largest task to the least loaded
        shares[lightest].append(i)
        loads[lightest] += tasks[i].end - tasks[i].start
    shares = [share for share in shares if share]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=package_root,  # this p3log first on the child's path
        )
        for _ in shares
    ]
    proofs: list[RangeProof | None] = [None] * len(tasks)
    try:
        for child, share in zip(children, shares, strict=True):
            assert child.stdin is not None
            child.stdin.write(pickle.dumps([tasks[i] for i in share]))
            child.stdin.close()
        for child, share in zip(children, shares, strict=True):
            assert child.stdout is not None
            output = child.stdout.read()
            if child.wait() == 0:
                for i, proof in zip(share, pickle.loads(output), strict=True):
                    proofs[i] = proof
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return proofs


def _serve() -> None:
    """A worker: tasks pickled on stdin, their proofs pickled on stdout."""
    tasks = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps([prove_range(task) for task in tasks]))


if __name__ == "__main__":
    # By its importable name, so that the proofs pickle as p3log.store.intact's.
    from p3log.store.intact import _serve as serve

    serve()
