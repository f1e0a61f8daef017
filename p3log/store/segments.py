"""Sealed Parquet segments of the events: what readers use while a recorder writes.

DuckDB lets one process write a database file or many read it, never both, so a
reader cannot open the index while a tap records. It does not need to: the events
are immutable, so the recorder seals them into Parquet files every
`SEAL_EVENTS` events, and the journal holds the rest. A live reader
(`live.py`) reads the sealed files and the journal's tail; neither ever changes
under it (segments are written once and renamed into place; the journal only
grows), so no lock is taken and no reader waits for the recorder or delays it.

A segment is Parquet with the declared `SEGMENT_SCHEMA`: `store_id` (the store's
id, in every row, so that (store_id, seq) is a key across stores), then the columns
of `event_log`. Its key-value metadata names the store and how it folded
(`p3log.store_id`, `p3log.projection_version`, `p3log.dialect`,
`p3log.dialect_sha256`). Segments sealed before store_id (`EVENT_SCHEMA` alone) are
still read and verified; a segment whose rows name another store was copied from it,
and is damage (`segment_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import attrs
import duckdb
import pyarrow as pa

from p3log.store.chain import NOT_EVENT_COLUMNS
from p3log.store.index import EVENT_COLUMNS, EVENT_SCHEMA, indexed_head, sql_string
from p3log.store.journal import fsync_path
from p3log.store.layout import open_layout
from p3log.store.parquet import META_STORE_ID, write_parquet

# Events per sealed segment: enough that a big store is a few hundred files, few
# enough that the tail a reader parses from the journal stays small (~30 MB).
SEAL_EVENTS = 20_000

STORE_ID = "store_id"
STORE_ID_FIELD = pa.field(STORE_ID, pa.string(), nullable=False)
SEGMENT_SCHEMA = pa.schema([STORE_ID_FIELD, *EVENT_SCHEMA])
# A segment's columns as DuckDB's DESCRIBE names them: sealed since store_id, and before.
_SEGMENT_COLUMNS = [(STORE_ID, "VARCHAR"), *EVENT_COLUMNS.items()]
_OLD_SEGMENT_COLUMNS = list(EVENT_COLUMNS.items())
# What a follower adds to a segment's metadata: how the store folds (the projections
# layer knows; the store layer does not).
Describe = Callable[[duckdb.DuckDBPyConnection], dict[str, str]]

_SEGMENT = re.compile(r"events-(\d{20})-(\d{20})\.parquet\Z")


@attrs.frozen
class Segment:
    path: Path
    first_seq: int
    last_seq: int


def segments_dir(root: Path) -> Path:
    return root / "segments"


def all_segments(root: Path) -> list[Segment]:
    """Every file named as a sealed segment, in seq order (`verify` checks each)."""
    found = []
    directory = segments_dir(root)
    if directory.is_dir():
        for path in directory.iterdir():
            match = _SEGMENT.match(path.name)
            if match:
                found.append(Segment(path, int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda segment: (segment.first_seq, segment.last_seq))


def sealed_segments(root: Path) -> list[Segment]:
    """The sealed segments that cover seq 1..N without a gap, in order.

    A segment after a gap is ignored (the journal has those events too), so a
    segment lost in a crash costs a reader time, never events.
    """
    found = {
        segment.first_seq: segment
        for segment in all_segments(root)
        if segment.last_seq >= segment.first_seq
    }
    covered: list[Segment] = []
    next_seq = 1
    while (segment := found.get(next_seq)) is not None:
        covered.append(segment)
        next_seq = segment.last_seq + 1
    return covered


class EventSegments:
    """An index follower that seals every `seal_events` indexed events into Parquet."""

    def __init__(
        self, root: Path, seal_events: int = SEAL_EVENTS, describe: Describe | None = None
    ) -> None:
        self._dir = segments_dir(root)
        self._seal_events = seal_events
        self._root = root
        self._describe = describe
        covered = sealed_segments(root)
        self._sealed = covered[-1].last_seq if covered else 0

    def follow(self, index: duckdb.DuckDBPyConnection) -> int:
        """Seal what the index holds beyond the last segment, in full segments only;
        returns how many events were sealed."""
        head = indexed_head(index)
        sealed = 0
        while head - self._sealed >= self._seal_events:
            self._seal(index, self._sealed + 1, self._sealed + self._seal_events)
            sealed += self._seal_events
        return sealed

    def _seal(self, index: duckdb.DuckDBPyConnection, first: int, last: int) -> None:
        self._dir.mkdir(exist_ok=True)
        final = self._dir / f"events-{first:020d}-{last:020d}.parquet"
        partial = final.with_suffix(".parquet.partial")
        store_id = open_layout(self._root, create=False)[1].store_id
        metadata = {META_STORE_ID: store_id}
        if self._describe is not None:
            metadata |= self._describe(index)
        rows = index.sql(
            f"SELECT ? AS {STORE_ID}, * FROM event_log WHERE seq BETWEEN ? AND ? ORDER BY seq",
            params=[store_id, first, last],
        ).to_arrow_reader(self._seal_events)
        write_parquet(rows, partial, SEGMENT_SCHEMA.with_metadata(metadata))
        fsync_path(partial)
        partial.replace(final)
        fsync_path(self._dir)
        self._sealed = last


def segment_problem(con: duckdb.DuckDBPyConnection, path: str, store_id: str) -> str | None:
    """Why the Parquet file at `path` cannot stand for this store's `event_log` rows
    (None: it can): unreadable, not exactly a segment's columns and types (either
    format), or rows that name another store (a segment copied from it)."""
    source = f"read_parquet({sql_string(path)})"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:
        return f"cannot be read as Parquet ({str(exc).strip().splitlines()[0]})"
    columns = [(row[0], row[1]) for row in described]
    if columns == _OLD_SEGMENT_COLUMNS:  # sealed before store_id
        return None
    if columns != _SEGMENT_COLUMNS:
        return NOT_EVENT_COLUMNS
    try:
        # Every value read, never a filter: DuckDB would skip row groups whose min/max
        # statistics say this store, and a changed dictionary page would go unseen.
        found = con.execute(f"SELECT DISTINCT {STORE_ID} FROM {source}").fetchall()
    except duckdb.Error as exc:
        return f"cannot be read as Parquet ({str(exc).strip().splitlines()[0]})"
    other = next((value for (value,) in found if value != store_id), None)
    if other is not None:
        return f"its rows are store {other}'s, not this store's {store_id} (copied from it)"
    return None
