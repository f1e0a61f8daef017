"""The event log: the one writer of a store.

`EventLog.open` takes the store's writer lock and recovers: a torn journal tail is
set aside, and journaled events the index lacks are ingested. Then:

- `record_message` / `record_lifecycle` redact, assign the next seq, seal the event
  into the hash chain and append it to the journal before returning. This is the
  hot path and touches no database.
- `append_all_or_nothing` journals a batch (an import) as one new segment that
  appears whole or not at all, then indexes it.
- `take_pending` hands the events journaled since the last call to whoever moves
  them into DuckDB (`flush` here, or `IndexWriter` in a trio program), in batches.

Single-threaded by design: one thread calls the record methods, so seq order is
journal order is index order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Protocol

import attrs
import duckdb

from p3log.store.capture import Door
from p3log.store.errors import StoreBusy, StoreCorrupt, StoreError
from p3log.store.event import (
    WIRE_KINDS,
    Event,
    EventBody,
    Sender,
    Stamp,
    body_canonical,
    link,
    seal,
)
from p3log.store.governance import (
    GOVERNANCE_KIND,
    GOVERNANCE_SESSION,
    Governor,
    choose_key,
    configures,
)
from p3log.store.index import (
    WRITER_CHECKPOINT_THRESHOLD,
    WRITER_THREADS,
    connect,
    create_schema,
    indexed_head,
    ingest_journal,
    insert_records,
)
from p3log.store.journal import IncomingSegment, Journal, discard_incoming, open_journal
from p3log.store.keys import key_for_new_store
from p3log.store.layout import StoreLayout, StoreMeta, open_layout, writer_lock
from p3log.store.lifecycle import Lifecycle, to_json
from p3log.store.records import body_fields, encode_record, record_line

logger = logging.getLogger("p3log")

# Lines per index insert: large enough to amortise a DuckDB transaction, small
# enough that parsing and inserting a batch stays within a few tens of MB.
INDEX_BATCH_LINES = 4096


class IndexFollower(Protocol):
    """Tables derived from the index that keep up with it (the projections)."""

    def follow(self, index: duckdb.DuckDBPyConnection) -> object:
        """Bring the derived tables level with the events in `index`."""
        ...


class EventLog:
    def __init__(
        self,
        layout: StoreLayout,
        meta: StoreMeta,
        journal: Journal,
        index: duckdb.DuckDBPyConnection,
        governor: Governor | None,
        resources: ExitStack,
        followers: Sequence[IndexFollower] = (),
    ) -> None:
        self.layout = layout
        self.meta = meta
        self.index = index
        self._journal = journal
        self._governor = governor
        self._door: Door | None = Door(governor.redactor) if governor else None
        self._resources = resources
        self._pending: list[bytes] = []  # record lines journaled, not yet indexed
        self._followers = list(followers)

    @classmethod
    def open(
        cls,
        root: Path,
        *,
        create: bool = True,
        followers: Sequence[IndexFollower] = (),
        records: bool = True,
    ) -> EventLog:
        """The store's writer. With `records` False it only brings the index level
        (readers): it needs no fingerprint key and cannot record."""
        layout, meta = _open_layout(root, create=create and records)
        # The key is checked before anything in the store is touched.
        chosen = choose_key(layout, meta) if records else None
        resources = ExitStack()
        try:
            resources.enter_context(writer_lock(layout))
            discard_incoming(layout.journal_dir)
            journal = open_journal(layout.journal_dir)
            resources.callback(journal.close)
            index = _connect_index(layout)
            resources.callback(index.close)
            index.execute(f"SET threads = {WRITER_THREADS}")
            index.execute(f"SET checkpoint_threshold = '{WRITER_CHECKPOINT_THRESHOLD}'")
            create_schema(index)
            recover_index(index, layout, journal.head.seq)
            governor = Governor.start(layout, meta, chosen, index) if chosen else None
        except BaseException:
            resources.close()
            raise
        meta = governor.meta if governor else meta
        log = cls(layout, meta, journal, index, governor, resources, followers)
        if governor is not None and governor.urgent:
            log._append_configuration(Stamp.now(), log._seal)
        log.follow_index()
        return log

    @property
    def key_file(self) -> Path | None:
        """Where the fingerprint key this writer records with is kept (None if it reads)."""
        return self._governor.key_file if self._governor else None

    @property
    def head(self) -> tuple[int, str]:
        """The seq and hash of the last event appended."""
        return self._journal.head.seq, self._journal.head.hash

    def record_message(
        self, session_id: str, sender: Sender, data: bytes, stamp: Stamp | None = None
    ) -> Event:
        """Record bytes a peer sent; returns once the event is in the journal."""
        body = self._recording().wire_body(session_id, sender, data, stamp or Stamp.now())
        return self._append(body)

    def record_lifecycle(
        self,
        session_id: str,
        event: Lifecycle | str,
        details: Mapping[str, object] | bytes | None = None,
        stamp: Stamp | None = None,
    ) -> Event:
        """Record something p3log observed (connection opened, upstream failed, ...): a
        `store.lifecycle` record, or a kind and raw `details` (as an import holds them).
        Either way as JSON through the door, which redacts it."""
        if isinstance(event, Lifecycle):
            kind, data = event.kind, details if details is not None else to_json(event)
        else:
            kind, data = event, details if details is not None else {}
        body = self._recording().lifecycle_body(session_id, kind, data, stamp or Stamp.now())
        return self._append(body)

    def record_imported(self, earlier: EventBody) -> Event:
        """Record an event from another store's export as if its bytes had just arrived:
        redacted and classified again here, keeping the rules that fired before."""
        return self._append(self.imported_body(earlier))

    def imported_body(self, earlier: EventBody) -> EventBody:
        """What `record_imported` records for `earlier`: the body redacted again here."""
        door = self._recording()
        if earlier.kind in WIRE_KINDS:
            wire = earlier.raw if earlier.raw is not None else (earlier.payload or "").encode()
            body = door.wire_body(earlier.session_id, earlier.sender, wire, earlier.stamp)
        else:
            details = (earlier.payload or "{}").encode()
            body = door.lifecycle_body(earlier.session_id, earlier.kind, details, earlier.stamp)
        self.refuse_own_configuration([earlier])
        if set(earlier.redactions) <= set(body.redactions):  # the common case: no copy
            return body
        redactions = tuple(sorted({*body.redactions, *earlier.redactions}))
        return attrs.evolve(body, redactions=redactions)

    def render_imported(self, earlier: EventBody) -> Rendered:
        """`imported_body`, rendered for `Batch.append_rendered` (in another process:
        `bulk.py`), with whether its redaction used the fingerprint key."""
        body = self.imported_body(earlier)
        used = False
        if self._governor is not None:
            used, self._governor.redactor.used_key = self._governor.redactor.used_key, False
        stamp = body.stamp
        return body_fields(body), body_canonical(body), stamp.recorded_at_us, stamp.mono_ns, used

    @contextmanager
    def append_all_or_nothing(self) -> Iterator[Batch]:
        """A batch whose events join the journal together when the block ends without
        an exception, and never partly: the one commit is a rename (journal.py,
        `IncomingSegment`). The index and its followers then catch up."""
        self.flush()  # what is pending goes to the index first, so nothing goes twice
        segment = IncomingSegment(self.layout.journal_dir, self._journal.head)
        try:
            batch = Batch(segment, self._append, self._configure_if_due)
            yield batch
        except BaseException:
            segment.discard()
            raise
        if batch.count == 0:
            segment.discard()
            return
        self._journal.adopt(segment)
        recover_index(self.index, self.layout, self._journal.head.seq)
        self.follow_index()

    def refuse_own_configuration(self, bodies: Sequence[EventBody]) -> None:
        """Imported events may hold other stores' configurations, never this one's:
        only this store's writers say what governs its redaction."""
        for body in bodies:
            if body.kind == GOVERNANCE_KIND and configures(body.payload, self.meta.store_id):
                raise StoreError(
                    "the file holds this store's own redaction configuration (it is an "
                    "export of this store): import it into another store"
                )

    def _recording(self) -> Door:
        if self._door is None:
            raise StoreError(f"{self.layout.root} was opened to read, not to record")
        return self._door

    def _append(self, body: EventBody, seal: _Seal | None = None) -> Event:
        """Chain and journal a body that `capture` made (and so redacted), by `seal` (the
        journal's, or an all-or-nothing batch's); first, if its redaction made the
        writer's first fingerprint, the configuration it records with (`governance.py`)."""
        seal = seal or self._seal
        self._configure_if_due(body.stamp, seal)
        return seal(body)

    def _configure_if_due(self, stamp: Stamp, seal: _Seal, used_key: bool = False) -> None:
        """Append the configuration if it is due before the event just redacted (whose
        redaction, if it ran in another process, `used_key` or not)."""
        if self._governor is None:
            return
        self._governor.redactor.used_key |= used_key
        if self._governor.due():
            self._append_configuration(stamp, seal)

    def _append_configuration(self, stamp: Stamp, seal: _Seal) -> None:
        assert self._governor is not None
        self._governor.restate()
        details = self._governor.configuration()
        body = self._recording().lifecycle_body(
            GOVERNANCE_SESSION, details.kind, to_json(details), stamp
        )
        if body.redactions:  # fail closed: a configuration must be recorded as it is
            raise StoreError(f"redaction changed the configuration it was to record: {details}")
        seal(body)
        self._governor.appended()
        self.meta = self._governor.meta

    def _seal(self, body: EventBody) -> Event:
        seq, prev_hash = self.head
        event = seal(body, seq + 1, prev_hash)
        line = encode_record(event)
        self._journal.append(line, event.seq, event.hash)
        self._pending.append(line)
        return event

    def sync(self) -> None:
        """fsync the journal: what was appended now survives power loss too."""
        self._journal.sync()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def take_pending(self) -> list[bytes]:
        """Up to INDEX_BATCH_LINES record lines journaled but not yet handed to the
        index, oldest first. Bounding the batch bounds the memory an insert needs."""
        batch = self._pending[:INDEX_BATCH_LINES]
        del self._pending[:INDEX_BATCH_LINES]
        return batch

    def index_batch(self, batch: Sequence[bytes]) -> None:
        """Insert record lines into the index, then let its followers catch up."""
        insert_records(self.index, batch)
        self.follow_index()

    def follow_index(self) -> None:
        """Let each follower catch up with the index. A follower that fails is dropped
        for the life of this log: derived tables must never stop a recording, and the
        next open (or `p3log rebuild`) brings them level again."""
        for follower in list(self._followers):
            try:
                follower.follow(self.index)
            except Exception as exc:
                self._followers.remove(follower)
                logger.error(
                    "projections stopped following the events (%s); they catch up when "
                    "the store is next opened, or run p3log rebuild",
                    _first_line(exc),
                )

    def flush(self) -> int:
        """Move every pending event into the index now; returns how many."""
        moved = 0
        while batch := self.take_pending():
            self.index_batch(batch)
            moved += len(batch)
        return moved

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._resources.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_layout(root: Path, *, create: bool) -> tuple[StoreLayout, StoreMeta]:
    """`open_layout`; a new store gets a fingerprint key of its own, kept outside it."""
    if create and not StoreLayout(root).meta_path.exists():
        key, _ = key_for_new_store()
        return open_layout(root, create=True, key_id=key.id)
    return open_layout(root, create=False)


class Batch:
    """Events sealed into the chain after the journal's head, in an incoming segment."""

    def __init__(self, segment: IncomingSegment, append: _Append, configure: _Configure) -> None:
        self.segment = segment
        self.count = 0  # events appended (not the configuration the log may add first)
        self._append = append
        self._configure = configure

    def append(self, body: EventBody) -> Event:
        """Chain a body that `capture` made (and so redacted) into the batch, by the log's
        own rules (`EventLog._append`)."""
        event = self._append(body, self._seal)
        self.count += 1
        return event

    def append_rendered(self, rendered: Rendered) -> None:
        """`append` for a body redacted and rendered elsewhere (`render_imported`): only
        the chain link (seq, prev_hash, SHA-256) is left to do, in order."""
        fields, canonical, recorded_at_us, mono_ns, used_key = rendered
        self._configure(Stamp(recorded_at_us, mono_ns), self._seal, used_key)
        head = self.segment.head
        seq = head.seq + 1
        hash = link(head.hash, seq, canonical)
        self.segment.append(record_line(seq, fields, head.hash, hash), seq, hash)
        self.count += 1

    def _seal(self, body: EventBody) -> Event:
        head = self.segment.head
        event = seal(body, head.seq + 1, head.hash)
        self.segment.append(encode_record(event), event.seq, event.hash)
        return event


_Seal = Callable[[EventBody], Event]
_Append = Callable[[EventBody, _Seal], Event]
_Configure = Callable[[Stamp, _Seal, bool], None]
# A body's record fields and canonical form (records.body_fields, event.body_canonical),
# its stamp (recorded_at_us, mono_ns), and whether its redaction used the key: a tuple,
# as it crosses a pipe between processes a million times.
Rendered = tuple[bytes, bytes, int, int, bool]


def recover_index(index: duckdb.DuckDBPyConnection, layout: StoreLayout, journal_head: int) -> int:
    """Bring the index level with the journal; returns how many events it ingested."""
    indexed = indexed_head(index)
    if indexed > journal_head:
        raise StoreCorrupt(
            f"the index holds events up to seq {indexed} but the journal ends at seq "
            f"{journal_head}; run p3log verify"
        )
    try:
        return ingest_journal(index, layout.journal_dir, journal_head)
    except duckdb.Error as exc:
        raise StoreCorrupt(
            f"cannot read the journal of {layout.root} ({_first_line(exc)}); run p3log verify"
        ) from exc


def _connect_index(layout: StoreLayout) -> duckdb.DuckDBPyConnection:
    try:
        return connect(layout.index_path)
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise index_open_error(layout, exc) from exc
    except duckdb.Error as exc:
        raise damaged_index(layout, exc) from exc


def index_open_error(layout: StoreLayout, exc: duckdb.Error) -> StoreError:
    """Why the index file could not be opened: another process holds it (DuckDB's
    lock; it names the pid), or the file is damaged. Anything DuckDB does not call a
    lock conflict is damage, never taken for a busy store."""
    text = str(exc)
    if isinstance(exc, duckdb.ConnectionException) or "Could not set lock" in text:
        holder = re.search(r"\(PID \d+\)", text)
        return StoreBusy(
            f"the index of {layout.root} is open in another process "
            f"{holder.group(0) if holder else ''}; close it and retry"
        )
    return damaged_index(layout, exc)


def damaged_index(layout: StoreLayout, exc: BaseException) -> StoreCorrupt:
    return StoreCorrupt(
        f"the index {layout.index_path} is damaged ({_first_line(exc)}); delete it and the "
        "next open rebuilds it from the journal (p3log verify checks the journal)"
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
