"""Following the journal from outside the process that writes it.

The indexer (`indexer.py`) runs beside the recorder, often in another process, and
learns what was journaled by reading the segments: `JournalTail` starts at the event
after the index's head and returns the complete record lines written since, in seq
order. Segments are named after their first seq and hold consecutive seqs, one per
line, so the line of seq N is found by name and by counting newlines.

What the follower trusts, and what it refuses (StoreCorrupt, pointing at verify):
- Only complete lines are read, up to the last newline: a line the recorder is
  writing at that instant is left for the next read. A restarted recorder sets aside
  a torn last line (`journal.py`); the follower never read it, so nothing changes
  for it, and it goes on reading at the same offset, where the recorder appends.
- Each line must start with the next seq and chain to the one before it
  (`prev_hash` equals the previous line's `hash`; the first line read must follow
  the index's head): a journal rewritten under the follower, or an index ahead of
  the journal, is refused rather than indexed twice or with a hole.
- It moves to the next segment only once one named after the next seq exists; a
  segment left with bytes after its last newline although a later one exists is
  damaged.

Reading costs little next to DuckDB: a pread of what is new (from the page cache,
as the recorder just wrote it), a split into lines and two slice comparisons a line.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from p3log.store.errors import StoreCorrupt
from p3log.store.journal import segment_first_seq, segment_name, segment_paths

_READ_BYTES = 1024 * 1024  # one pread; doubled for a line longer than that
# A canonical record line ends `,"prev_hash":"<64 hex>","hash":"<64 hex>"}\n`
# (records.py): the chain fields are read by position, without parsing the line.
_HASH = slice(-67, -3)
_PREV_HASH = slice(-141, -77)
_PREV_KEY = slice(-155, -141)
_HASH_KEY = slice(-77, -67)


@attrs.frozen
class Mark:
    """How far the journal reached at one moment: its last segment and that one's size."""

    first_seq: int
    size: int


class JournalTail:
    """Record lines after a given event, read from the journal as it grows."""

    def __init__(self, journal_dir: Path, after_seq: int, after_hash: str) -> None:
        """Follow the journal after seq `after_seq`, whose hash must be `after_hash` (the
        index's head; seq 0 and the genesis hash for an empty index)."""
        self._dir = journal_dir
        self.next_seq = after_seq + 1
        self._last_hash = after_hash
        self._segment: Path | None = None  # the segment holding `next_seq`, once found
        self._offset = 0
        self._locate(after_seq)

    def mark(self) -> Mark | None:
        """Where the journal ends now (None: no segment yet); `read(until=…)` stops there."""
        paths = segment_paths(self._dir)
        if not paths:
            return None
        return Mark(segment_first_seq(paths[-1]), paths[-1].stat().st_size)

    def read(self, max_lines: int, until: Mark | None = None) -> list[bytes]:
        """Up to `max_lines` complete record lines from `next_seq` on, oldest first (an
        empty list when nothing new is complete); with `until`, none written after it."""
        lines: list[bytes] = []
        while len(lines) < max_lines:
            if self._segment is None and not self._enter(self._dir / segment_name(self.next_seq)):
                break
            assert self._segment is not None
            first = segment_first_seq(self._segment)
            end = None
            if until is not None:
                if first > until.first_seq:
                    break
                if first == until.first_seq:
                    end = until.size
            got = self._read_lines(max_lines - len(lines), end)
            lines.extend(got)
            if got:
                continue
            if end is not None or not self._next_segment():
                break
        return lines

    def _read_lines(self, max_lines: int, end: int | None) -> list[bytes]:
        assert self._segment is not None
        size = _READ_BYTES
        with self._segment.open("rb") as segment:
            while True:
                want = size if end is None else min(size, end - self._offset)
                if want <= 0:
                    return []
                data = os.pread(segment.fileno(), want, self._offset)
                cut = data.rfind(b"\n") + 1
                if cut or len(data) < want or self._offset + want == end:
                    break
                size *= 2  # one line longer than what was read: read more at once
        if not cut:
            return []
        lines = [line + b"\n" for line in data[: cut - 1].split(b"\n", max_lines)[:max_lines]]
        for line in lines:
            self._check(line)
        self._offset += sum(map(len, lines))
        return lines

    def _check(self, line: bytes) -> None:
        seq = self.next_seq
        if not line.startswith(b'{"seq":%d,' % seq):
            raise self._refused(f"the line at seq {seq} does not hold seq {seq}")
        if (
            len(line) < 155
            or line[_PREV_KEY] != b',"prev_hash":"'
            or line[_HASH_KEY] != b'","hash":"'
            or line[-3:] != b'"}\n'
        ):
            raise self._refused(f"the line of seq {seq} is not a record line")
        if line[_PREV_HASH].decode("ascii", "replace") != self._last_hash:
            raise self._refused(f"seq {seq} does not chain to the event before it")
        self._last_hash = line[_HASH].decode("ascii", "replace")
        self.next_seq = seq + 1

    def _next_segment(self) -> bool:
        """Move on to the segment after the current one, if it exists."""
        following = self._dir / segment_name(self.next_seq)
        if not following.is_file():
            return False
        assert self._segment is not None
        # Checked after the next segment was seen: the recorder writes no more here.
        if self._segment.stat().st_size != self._offset:
            raise self._refused(f"bytes after its last whole line, before {following.name}")
        return self._enter(following)

    def _enter(self, path: Path) -> bool:
        if not path.is_file():
            return False
        self._segment, self._offset = path, 0
        return True

    def _locate(self, after_seq: int) -> None:
        """Find the segment and offset of `next_seq`, checking the line of `after_seq`."""
        paths = segment_paths(self._dir)
        if after_seq == 0:
            if paths:
                self._enter(paths[0])
            return
        holding = [path for path in paths if segment_first_seq(path) <= after_seq]
        if not holding:
            raise self._missing(after_seq)
        path = holding[-1]
        skip = after_seq - segment_first_seq(path)  # lines before the one of after_seq
        self._segment, self._offset = path, _offset_after_lines(path, skip)
        head_line = _line_at(path, self._offset)
        if head_line is None:
            raise self._missing(after_seq)
        expected, self.next_seq = self._last_hash, after_seq
        self._last_hash = head_line[_PREV_HASH].decode("ascii", "replace")
        self._check(head_line)
        if self._last_hash != expected:
            raise StoreCorrupt(
                f"the journal's event at seq {after_seq} is not the index's; run p3log verify"
            )
        self._offset += len(head_line)

    def _missing(self, seq: int) -> StoreCorrupt:
        return StoreCorrupt(
            f"the index holds events up to seq {seq} but the journal has no seq {seq}; "
            "run p3log verify"
        )

    def _refused(self, reason: str) -> StoreCorrupt:
        return StoreCorrupt(f"{self._segment}: {reason}; run p3log verify")


def _offset_after_lines(path: Path, count: int) -> int:
    """The byte offset just after the first `count` lines of `path` (its size if fewer)."""
    offset = 0
    with path.open("rb") as segment:
        while count:
            chunk = segment.read(_READ_BYTES)
            if not chunk:
                return offset
            found = chunk.count(b"\n")
            if found < count:
                count -= found
                offset += len(chunk)
                continue
            at = -1
            for _ in range(count):
                at = chunk.index(b"\n", at + 1)
            return offset + at + 1
    return offset


def _line_at(path: Path, offset: int) -> bytes | None:
    """The complete line starting at `offset`, or None."""
    with path.open("rb") as segment:
        segment.seek(offset)
        line = segment.readline()
    return line if line.endswith(b"\n") else None
