"""Where a store keeps what, and the guards around opening one.

A store is a directory:

    store.json          format version, store id, redaction policy
    redaction.key       per-store HMAC key for secret fingerprints (mode 0600)
    writer.lock         flock'd by the one process that records into the store
    journal/            append-only JSONL segments: the primary record
    journal/torn/       torn tail records set aside by recovery
    index.duckdb        the query index, rebuilt from the journal when needed
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
    def key_path(self) -> Path:
        return self.root / "redaction.key"

    @property
    def lock_path(self) -> Path:
        return self.root / "writer.lock"

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


def open_layout(root: Path, *, create: bool) -> tuple[StoreLayout, StoreMeta]:
    """Check that `root` is a store this p3log can read; with `create`, make one."""
    layout = StoreLayout(root)
    if not layout.meta_path.exists():
        if not create:
            raise StoreNotFound(f"no p3log store at {root} (store.json not found)")
        return layout, _initialise(layout)
    return layout, _read_meta(layout)


def read_redaction_key(layout: StoreLayout) -> bytes:
    try:
        return layout.key_path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {layout.key_path}: {exc.strerror}") from exc


@contextmanager
def writer_lock(layout: StoreLayout) -> Iterator[None]:
    """Hold the store's single-writer lock; fail at once if another process has it."""
    fd = os.open(layout.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StoreBusy(
                f"store {layout.root} is being recorded by another process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _initialise(layout: StoreLayout) -> StoreMeta:
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.journal_dir.mkdir(exist_ok=True)
        if not layout.key_path.exists():
            fd = os.open(layout.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as key_file:
                key_file.write(secrets.token_bytes(32))
        meta = StoreMeta(
            store_id=str(uuid.uuid4()),
            format_version=FORMAT_VERSION,
            created_at_us=time.time_ns() // 1000,
            redaction_policy=REDACTION_POLICY,
        )
        # Written last and atomically: a store.json means a complete store.
        tmp = layout.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(attrs.asdict(meta), indent=2) + "\n", encoding="utf-8")
        tmp.replace(layout.meta_path)
    except OSError as exc:
        raise StoreError(f"cannot create store at {layout.root}: {exc.strerror}") from exc
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
        )
    except OSError as exc:
        raise StoreError(f"cannot read {layout.meta_path}: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{layout.meta_path} is not a p3log store description: {exc}") from exc
