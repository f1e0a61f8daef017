"""Where a store keeps what, and the guards around opening one.

A store is a directory:

    store.json          format version, store id, redaction policy, fingerprint key id
    writer.lock         flock'd by the one process that appends to the journal
    index.lock          flock'd by the one process that writes index.duckdb
    journal/            append-only JSONL segments: the primary record
    journal/torn/       torn tail records set aside by recovery
    index.duckdb        the query index, rebuilt from the journal when needed

A process that records and indexes in one (an import, `pos --store`) holds both
locks, writer.lock first; the tap holds writer.lock and its indexer process
index.lock. Each lock file holds its holder's pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import attrs

from p3log.store.errors import StoreBusy, StoreError, StoreNotFound, StoreVersionError
from p3log.store.redact import REDACTION_POLICY

FORMAT_VERSION = 1


@attrs.frozen
class StoreLayout:
    root: Path

    @property
    def meta_path(self) -> Path:
        return self.root / "store.json"

    @property
    def legacy_key_path(self) -> Path:
        """Where stores made before key ids kept their fingerprint key (keys.py moves it
        out on the first recording open)."""
        return self.root / "redaction.key"

    @property
    def lock_path(self) -> Path:
        return self.root / "writer.lock"

    @property
    def index_lock_path(self) -> Path:
        return self.root / "index.lock"

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    @property
    def index_path(self) -> Path:
        return self.root / "index.duckdb"


@attrs.frozen
class StoreMeta:
    store_id: str
    format_version: int
    created_at_us: int
    redaction_policy: str
    # The id of the fingerprint key outside the store (keys.py); None in a store made
    # before key ids, which still holds its key as `redaction.key`.
    key_id: str | None


def open_layout(
    root: Path, *, create: bool, key_id: str | None = None
) -> tuple[StoreLayout, StoreMeta]:
    """Check that `root` is a store this p3log can read; with `create`, make one that
    records with the fingerprint key `key_id`."""
    layout = StoreLayout(root)
    if not layout.meta_path.exists():
        if not create or key_id is None:
            raise StoreNotFound(f"no p3log store at {root} (store.json not found)")
        return layout, _initialise(layout, key_id)
    return layout, _read_meta(layout)


def write_meta(layout: StoreLayout, meta: StoreMeta) -> None:
    """Replace store.json atomically and durably."""
    tmp = layout.meta_path.with_suffix(".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            out.write(json.dumps(attrs.asdict(meta), indent=2) + "\n")
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(layout.meta_path)
    except OSError as exc:
        raise StoreError(f"cannot write {layout.meta_path}: {exc.strerror}") from exc


def writer_lock(layout: StoreLayout) -> AbstractContextManager[None]:
    """Hold the journal's single-writer lock; fail at once if another process has it."""
    return _exclusive(layout.lock_path, f"store {layout.root} is being recorded")


def index_lock(layout: StoreLayout) -> AbstractContextManager[None]:
    """Hold the lock of the index's one writer; fail at once if another process has it."""
    return _exclusive(layout.index_lock_path, f"the index of {layout.root} is being written")


@contextmanager
def _exclusive(path: Path, busy: str) -> Iterator[None]:
    """An exclusive flock on `path`, with this process's pid written in it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StoreBusy(f"{busy} by another process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _initialise(layout: StoreLayout, key_id: str) -> StoreMeta:
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.journal_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create store at {layout.root}: {exc.strerror}") from exc
    meta = StoreMeta(
        store_id=str(uuid.uuid4()),
        format_version=FORMAT_VERSION,
        created_at_us=time.time_ns() // 1000,
        redaction_policy=REDACTION_POLICY,
        key_id=key_id,
    )
    # Written last and atomically: a store.json means a complete store.
    write_meta(layout, meta)
    return meta


def _read_meta(layout: StoreLayout) -> StoreMeta:
    try:
        data = json.loads(layout.meta_path.read_text(encoding="utf-8"))
        version = data["format_version"]
        if not isinstance(version, int):
            raise TypeError("format_version is not an integer")
        if version > FORMAT_VERSION:
            raise StoreVersionError(
                f"store {layout.root} was written by a newer p3log (format {version}; "
                f"this p3log reads formats up to {FORMAT_VERSION})"
            )
        return StoreMeta(
            store_id=str(data["store_id"]),
            format_version=version,
            created_at_us=int(data["created_at_us"]),
            redaction_policy=str(data["redaction_policy"]),
            key_id=None if data.get("key_id") is None else str(data["key_id"]),
        )
    except OSError as exc:
        raise StoreError(f"cannot read {layout.meta_path}: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{layout.meta_path} is not a p3log store description: {exc}") from exc
