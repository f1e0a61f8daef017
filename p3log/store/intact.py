"""The proof that a store is intact, with each event hashed once (verify's fast path).

`verify` used to hash every event three times inside DuckDB (its journal line, its
index row, its sealed segment row) at about 3 µs of CPU each (DuckDB's SHA-256 does
not use the CPU's SHA instructions), besides the Python pass that checks each line's
spelling. Here each journal segment file is read once, in Python, by one of a pool
of processes:

- each line must be the canonical record (`decode_canonical`) of the next seq, its
  hash the SHA-256 of its prev_hash and canonical form (`hashlib`: ~1 µs), its
  prev_hash the hash of the line before;
- the index's rows and the sealed segments' rows at those seqs are compared with the
  journal's, byte for byte: DuckDB renders each row's canonical form
  (`chain.CANONICAL_SQL`, the very text the old check hashed) with its prev_hash and
  hash, and they must equal the line's. Equal content under an equal hash is what
  hashing the row again proved, so nothing is hashed twice.

What spans files (a file's first prev_hash against the last hash of the one before,
the index being a prefix of the journal, each segment holding its seq range once) is
checked by the caller (`verify.py`). A proof either holds, or is None: this module
never explains damage. Then verify computes its exact report the way it always has,
so every report keeps its wording, and only an intact store is fast.
"""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import duckdb
import pyarrow as pa

from p3log.store.chain import CANONICAL_SQL, ROWS_AS_RECORDS
from p3log.store.event import record_canonical_bytes
from p3log.store.governance import GOVERNANCE_KIND
from p3log.store.index import connect, sql_string
from p3log.store.records import RecordError, decode_canonical


@attrs.frozen
class FileTask:
    """One journal segment file and what else holds its events."""

    path: str
    first_seq: int  # from its name
    index_path: str | None  # the index, if it has an event table
    segment_files: tuple[tuple[str, int, int], ...]  # (path, first, last) overlapping it


@attrs.frozen
class FileProof:
    """A journal file found intact: its lines seq first_seq.. in order, each hash right."""

    first_prev: str  # the first line's prev_hash (the caller links it to the file before)
    hashes: list[str]  # each line's hash, in seq order
    indexed: int  # the index's rows equal to these lines, from first_seq on
    governance: list[tuple[int, str | None]]  # (seq, payload) of each configuration event

    def last_seq(self, first_seq: int) -> int:
        return first_seq + len(self.hashes) - 1


def prove_file(task: FileTask) -> FileProof | None:
    """The proof that one journal file, and the index's and segments' rows at its seqs,
    are intact; None if anything in them is not (verify then explains what)."""
    lines = _read_lines(task)
    if lines is None:
        return None
    canonical, prevs, hashes, governance = lines
    if not hashes:
        return None  # an empty segment file: the writer never leaves one
    last = task.first_seq + len(hashes) - 1
    expected = pa.table(
        {
            "seq": pa.array(range(task.first_seq, last + 1), pa.int64()),
            "form": pa.array(canonical, pa.binary()),
            "prev_hash": pa.array(prevs, pa.string()),
            "hash": pa.array(hashes, pa.string()),
        }
    )
    del canonical
    try:
        with connect() as con:
            con.execute("SET threads = 1")  # the pool is the parallelism
            indexed = 0
            if task.index_path is not None:
                con.execute(f"ATTACH {sql_string(task.index_path)} AS idx (READ_ONLY)")
                rows = _canonical_rows(con, "idx.event_log", task.first_seq, last)
                # The index may stop short of the journal, never go beyond it.
                indexed = rows.num_rows
                if indexed > expected.num_rows or not _equal(rows, expected.slice(0, indexed)):
                    return None
            if task.segment_files:
                files = ", ".join(sql_string(path) for path, _, _ in task.segment_files)
                wanted = [
                    seq - task.first_seq
                    for _, first, seg_last in task.segment_files
                    for seq in range(max(first, task.first_seq), min(seg_last, last) + 1)
                ]
                rows = _canonical_rows(con, f"read_parquet([{files}])", task.first_seq, last)
                if rows.num_rows != len(wanted) or not _equal(
                    rows, expected.take(pa.array(wanted, pa.int64()))
                ):
                    return None
    except duckdb.Error:
        return None
    return FileProof(prevs[0], hashes, indexed, governance)


_Lines = tuple[list[bytes], list[str], list[str], list[tuple[int, str | None]]]


def _read_lines(task: FileTask) -> _Lines | None:
    canonical: list[bytes] = []
    prevs: list[str] = []
    hashes: list[str] = []
    governance: list[tuple[int, str | None]] = []
    seq, prev = task.first_seq, None
    try:
        with Path(task.path).open("rb") as segment:
            for line in segment:  # split at b"\n" only, each line with its newline
                if not line.endswith(b"\n"):
                    return None
                record = decode_canonical(line)
                form = record_canonical_bytes(record)
                digest = hashlib.sha256(record["prev_hash"].encode() + form).hexdigest()
                if (
                    record["seq"] != seq
                    or digest != record["hash"]
                    or (prev is not None and record["prev_hash"] != prev)
                ):
                    return None
                if record["kind"] == GOVERNANCE_KIND and record["sender"] == "tap":
                    governance.append((seq, record["payload"]))
                canonical.append(form)
                prevs.append(record["prev_hash"])
                hashes.append(digest)
                seq, prev = seq + 1, digest
    except (OSError, RecordError, UnicodeError):
        return None
    return canonical, prevs, hashes, governance


def _canonical_rows(con: duckdb.DuckDBPyConnection, table: str, first: int, last: int) -> pa.Table:
    """(seq, form, prev_hash, hash) of the rows of `table` (event_log columns) with seq
    first..last, in the order they are stored; form is the canonical form."""
    return con.sql(
        f"SELECT seq, encode({CANONICAL_SQL}) AS form, prev_hash, hash "
        f"FROM ({ROWS_AS_RECORDS} FROM {table} WHERE seq BETWEEN {int(first)} AND {int(last)})"
    ).to_arrow_table()


def _equal(rows: pa.Table, expected: pa.Table) -> bool:
    """Whether the rows are the expected ones, column by column, in order."""
    return all(
        rows.column(name).cast(column.type).equals(column)
        for name, column in zip(expected.column_names, expected.columns, strict=True)
    )


def prove_files(tasks: Sequence[FileTask], workers: int) -> list[FileProof | None]:
    """`prove_file` of each task, over `workers` processes (the line pass is Python and
    holds the GIL). Each worker is `python -m p3log.store.intact`, given its tasks on
    stdin: unlike multiprocessing's spawn, it never re-imports the caller's script."""
    package_root = Path(__file__).resolve().parents[2]
    shares = [list(range(k, len(tasks), workers)) for k in range(workers)]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=package_root,  # this p3log first on the child's path
        )
        for _ in shares
    ]
    proofs: list[FileProof | None] = [None] * len(tasks)
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
    sys.stdout.buffer.write(pickle.dumps([prove_file(task) for task in tasks]))


if __name__ == "__main__":
    # By its importable name, so that the proofs pickle as p3log.store.intact's.
    from p3log.store.intact import _serve as serve

    serve()
