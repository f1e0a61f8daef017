"""The journal: append-only JSONL segments, the primary record of a store.

An append is one `write(2)` of whole record lines on an unbuffered descriptor; once
it returns, the bytes are in the kernel and survive SIGKILL of this process
(`sync()` adds fsync for power loss). A process killed mid-write leaves a torn last
line; `open_journal` sets it aside under `journal/torn/` before appending again,
so a torn record is never mistaken for an event and never lost either.

Segments are named after the seq of their first record (zero-padded, so names sort
in seq order) and rotate at `SEGMENT_BYTES`.

A batch that must be journaled all or nothing (`p3log import`) is written whole as
a new segment under `journal/incoming/`, which no reader looks at, and renamed into
`journal/` in one step (`IncomingSegment`); recovery deletes what a killed writer
left there (`discard_incoming`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import attrs

from p3log.store.errors import StoreCorrupt
from p3log.store.event import GENESIS_HASH
from p3log.store.records import RecordError, decode_canonical, decode_event

SEGMENT_BYTES = 64 * 1024 * 1024
SEGMENT_SUFFIX = ".jsonl"
_SEGMENT_NAME = re.compile(r"[0-9]{20}\.jsonl")
INCOMING_DIR = "incoming"
_TAIL_CHUNK = 1024 * 1024


@attrs.frozen
class JournalHead:
    """The last event in the journal (seq 0 and the genesis hash when empty)."""

    seq: int
    hash: str


def segment_paths(journal_dir: Path) -> list[Path]:
    """The journal's segments: files named as a segment (`segment_name`); anything else
    under `journal/` is no segment (`verify` names it), never read as one."""
    return sorted(path for path in journal_dir.glob(f"*{SEGMENT_SUFFIX}") if _is_segment(path))


def stray_paths(journal_dir: Path) -> list[Path]:
    """What `journal/` holds under a segment's suffix that is not a segment."""
    return sorted(p for p in journal_dir.glob(f"*{SEGMENT_SUFFIX}") if not _is_segment(p))


def _is_segment(path: Path) -> bool:
    return _SEGMENT_NAME.fullmatch(path.name) is not None and path.is_file()


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def segment_first_seq(path: Path) -> int:
    return int(path.name.removesuffix(SEGMENT_SUFFIX))


class Journal:
    """Appends record lines for the store's one writer."""

    def __init__(self, journal_dir: Path, head: JournalHead) -> None:
        self._dir = journal_dir
        self.head = head
        self._fd: int | None = None
        self._size = 0
        # Segments rotated out since the last `sync`, kept open until it covers them too,
        # and whether `journal/` gained a segment's name since: a sync covers every
        # event appended before it, whichever segment holds it.
        self._retired: list[int] = []
        self._named_since_sync = False

    def append(self, lines: bytes, last_seq: int, last_hash: str) -> None:
        """Write whole record lines; `last_seq`/`last_hash` are their final event's."""
        if self._fd is None or self._size >= SEGMENT_BYTES:
            self._open_segment(first_seq=self.head.seq + 1)
        assert self._fd is not None
        try:
            write_all(self._fd, lines)
        except OSError:
            # Take back a partial record, so the next append starts on a line boundary
            # and the failed event leaves no trace (its seq is used again).
            os.ftruncate(self._fd, self._size)
            raise
        self._size += len(lines)
        self.head = JournalHead(last_seq, last_hash)

    def adopt(self, segment: IncomingSegment) -> None:
        """Make a whole incoming segment the journal's last one; appends continue in it."""
        self.close()
        head = segment.commit()
        self.head = head

    def sync(self) -> None:
        """Make every event appended so far survive power loss. Safe to run on another
        thread than `append`'s: the current segment is read before the retired ones are
        taken, so a rotation in between leaves the old segment in the taken list."""
        current = self._fd
        retired, self._retired = self._retired, []
        named, self._named_since_sync = self._named_since_sync, False
        for fd in retired:
            os.fdatasync(fd)
            os.close(fd)
        if current is not None:
            os.fdatasync(current)  # the data and the size; no need for timestamps
        if named:
            fsync_path(self._dir)

    def close(self) -> None:
        for fd in self._retired:
            os.close(fd)
        self._retired = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_segment(self, first_seq: int) -> None:
        segments = segment_paths(self._dir)
        # Keep appending to the last segment after a restart unless it is full.
        if self._fd is None and segments and segments[-1].stat().st_size < SEGMENT_BYTES:
            path = segments[-1]
        else:
            if self._fd is not None:
                self._retired.append(self._fd)  # its tail is synced by the next `sync`
                self._fd = None
            path = self._dir / segment_name(first_seq)
            self._named_since_sync = True
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size


class IncomingSegment:
    """A segment written whole before it joins the journal, so that a batch of records
    is in the journal entirely or not at all, whenever the writer is killed.

    The records go to `journal/incoming/<segment name>` (no reader looks there), in
    one `write(2)` per `WRITE_BYTES` of lines; `commit` writes the rest, fsyncs the
    file and renames it into `journal/`, the one step at which the whole batch
    appears, then fsyncs the directory so the rename is durable too. A write that
    fails (a full disk) raises; the caller discards the segment, the journal is as
    it was.
    """

    # Lines gathered per write(2): the syscall and its page-cache work are paid per
    # batch, not per line (a buffered file would cut them into 8 KiB writes).
    WRITE_BYTES = 4 * 1024 * 1024

    def __init__(self, journal_dir: Path, head: JournalHead) -> None:
        self.dir = journal_dir / INCOMING_DIR
        self.dir.mkdir(exist_ok=True)
        self.path = self.dir / segment_name(head.seq + 1)
        self._journal_dir = journal_dir
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._lines: list[bytes] = []
        self._gathered = 0
        self.head = head

    def append(self, lines: bytes, last_seq: int, last_hash: str) -> None:
        self._lines.append(lines)
        self._gathered += len(lines)
        self.head = JournalHead(last_seq, last_hash)
        if self._gathered >= self.WRITE_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand what was appended to the kernel (to be read before the commit)."""
        if self._lines:
            write_all(self._fd, b"".join(self._lines))
            self._lines.clear()
            self._gathered = 0

    def commit(self) -> JournalHead:
        """Put the segment in the journal; returns its last record's seq and hash."""
        self.flush()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        final = self._journal_dir / self.path.name
        if final.exists() and final.stat().st_size:
            raise StoreCorrupt(f"{final} already exists; run p3log verify")
        self.path.replace(final)
        fsync_path(self._journal_dir)
        fsync_path(self.dir)
        return self.head

    def discard(self) -> None:
        if self._fd != -1:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data`: write(2) may be partial, e.g. on a nearly full disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def discard_incoming(journal_dir: Path) -> None:
    """Delete what a writer killed before its commit left under `journal/incoming/`
    (never part of the journal); call with the writer lock held."""
    incoming = journal_dir / INCOMING_DIR
    if incoming.is_dir():
        for path in incoming.iterdir():
            path.unlink()
        fsync_path(incoming)


def open_journal(journal_dir: Path) -> Journal:
    """Open for appending after setting aside a torn tail; find the head."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    head = JournalHead(0, GENESIS_HASH)
    for path in reversed(segment_paths(journal_dir)):
        _set_aside_torn_tail(path)
        last = _last_line(path)
        if last is not None:
            try:
                event = decode_event(decode_canonical(last))
            except RecordError as exc:
                raise StoreCorrupt(
                    f"the last record of {path} is damaged ({exc}); run p3log verify"
                ) from exc
            head = JournalHead(event.seq, event.hash)
            break
    return Journal(journal_dir, head)


def _set_aside_torn_tail(path: Path) -> None:
    """Move bytes after the last newline (a write cut short) to journal/torn/."""
    size = path.stat().st_size
    end = _last_newline_end(path, size)
    if end == size:
        return
    torn_dir = path.parent / "torn"
    torn_dir.mkdir(exist_ok=True)
    with path.open("r+b") as segment:
        segment.seek(end)
        torn = segment.read()
        keep = torn_dir / f"{path.stem}.at-{end}.partial"
        keep.write_bytes(torn)
        fsync_path(keep)
        segment.truncate(end)
        segment.flush()
        os.fsync(segment.fileno())


def _last_newline_end(path: Path, size: int) -> int:
    """Offset just past the last b"\\n" in the file (0 if there is none)."""
    with path.open("rb") as segment:
        pos = size
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            segment.seek(start)
            chunk = segment.read(pos - start)
            found = chunk.rfind(b"\n")
            if found != -1:
                return start + found + 1
            pos = start
    return 0


def _last_line(path: Path) -> bytes | None:
    size = path.stat().st_size
    if size == 0:
        return None
    start = _last_newline_end(path, size - 1)  # skip the line's own final newline
    with path.open("rb") as segment:
        segment.seek(start)
        return segment.read(size - start)


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (after a rename, so the new name is durable too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
