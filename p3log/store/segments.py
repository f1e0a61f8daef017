"""Sealed Parquet segments of the events: what readers use while a recorder writes.

DuckDB lets one process write a database file or many read it, never both, so a
reader cannot open the index while a tap records. It does not need to: the events
are immutable, so the recorder seals them into Parquet files every
`SEAL_EVENTS` events, and the journal holds the rest. A live reader
(`live.py`) reads the sealed files and the journal's tail; neither ever changes
under it (segments are written once and renamed into place; the journal only
grows), so no lock is taken and no reader waits for the recorder or delays it.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import duckdb

from p3log.store.index import indexed_head, sql_string
from p3log.store.journal import fsync_path

# Events per sealed segment: enough that a big store is a few hundred files, few
# enough that the tail a reader parses from the journal stays small (~30 MB).
SEAL_EVENTS = 20_000

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

    def __init__(self, root: Path, seal_events: int = SEAL_EVENTS) -> None:
        self._dir = segments_dir(root)
        self._seal_events = seal_events
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
        index.execute(
            f"COPY (SELECT * FROM event_log WHERE seq BETWEEN {first} AND {last} ORDER BY seq) "
            f"TO {sql_string(str(partial))} (FORMAT parquet, COMPRESSION zstd)"
        )
        fsync_path(partial)
        partial.replace(final)
        fsync_path(self._dir)
        self._sealed = last
