"""The event log: the one writer of a store's journal.

`EventLog.open` takes the store's writer lock and recovers the journal (a torn tail
is set aside). By default it also takes the index lock, ingests journaled events the
index lacks, and indexes what it records in this process (`indexer.py`); the tap
opens it without (`index=False`) and leaves the index to its indexer process. Then:

- `record_message` / `record_lifecycle` redact, assign the next seq, seal the event
  into the hash chain and append it to the journal before returning. This is the
  hot path and touches no database.
- `append_all_or_nothing` journals a batch (an import) as one new segment that
  appears whole or not at all, then indexes it.
- `flush` brings the index level with the journal (an in-process indexer follows
  the journal as any other would; `indexer.keep_up` does it at a cadence in a trio
  program).

Single-threaded by design: one thread calls the record methods, so seq order is
journal order is index order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType

import attrs
import duckdb

from p3log.store.capture import Door
from p3log.store.errors import StoreCorrupt, StoreError
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
    recorded_in_journal,
)
from p3log.store.index import indexed_head, ingest_journal
from p3log.store.indexer import Indexer, IndexFollower, first_line, open_index
from p3log.store.journal import IncomingSegment, Journal, discard_incoming, open_journal
from p3log.store.keys import key_for_new_store
from p3log.store.layout import StoreLayout, StoreMeta, index_lock, open_layout, writer_lock
from p3log.store.lifecycle import Lifecycle, to_json
from p3log.store.records import body_fields, encode_record, record_line


class EventLog:
    def __init__(
        self,
        layout: StoreLayout,
        meta: StoreMeta,
        journal: Journal,
        indexer: Indexer | None,
        governor: Governor | None,
        resources: ExitStack,
    ) -> None:
        self.layout = layout
        self.meta = meta
        self.indexer = indexer  # None: another process indexes (the tap's indexer)
        self._journal = journal
        self._governor = governor
        self._door: Door | None = Door(governor.redactor) if governor else None
        self._resources = resources

    @classmethod
    def open(
        cls,
        root: Path,
        *,
        create: bool = True,
        followers: Sequence[IndexFollower] = (),
        records: bool = True,
        index: bool = True,
    ) -> EventLog:
        """The store's writer: it holds writer.lock and appends to the journal. With
        `index` it also holds index.lock, brings the index (and `followers`) level and
        indexes in this process; without, it never opens DuckDB and an indexer
        process follows the journal (the tap). With `records` False it only brings
        the index level (readers): it needs no fingerprint key and cannot record."""
        layout, meta = _open_layout(root, create=create and records)
        # The key is checked before anything in the store is touched.
        chosen = choose_key(layout, meta) if records else None
        resources = ExitStack()
        try:
            resources.enter_context(writer_lock(layout))
            discard_incoming(layout.journal_dir)
            journal = open_journal(layout.journal_dir)
            resources.callback(journal.close)
            indexer = None
            if index:
                resources.enter_context(index_lock(layout))
                con = open_index(layout)
                resources.callback(con.close)
                recover_index(con, layout, journal.head.seq)
                indexer = Indexer(layout, con, followers)
            governor = None
            if chosen is not None:
                recorded = recorded_in_journal(layout.journal_dir, meta.store_id)
                governor = Governor.start(layout, meta, chosen, recorded)
        except BaseException:
            resources.close()
            raise
        meta = governor.meta if governor else meta
        log = cls(layout, meta, journal, indexer, governor, resources)
        if governor is not None and governor.urgent:
            log._append_configuration(Stamp.now(), log._seal)
        log.flush()
        return log

    @property
    def index(self) -> duckdb.DuckDBPyConnection:
        """The index's connection (this log indexes in its own process)."""
        if self.indexer is None:
            raise StoreError(f"{self.layout.root} was opened to record, not to index")
        return self.indexer.index

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

    def as_recorded(self, sender: Sender, data: bytes) -> bytes:
        """`data` from a peer as `record_message` would record it (redacted), recording
        nothing: how a replay reads a connection's first message before its session
        exists. No session's memory of secrets is touched."""
        door = self._recording()
        body = door.wire_body(_UNRECORDED, sender, data, Stamp.now())
        door.secrets.forget(_UNRECORDED)
        assert body.wire_bytes is not None  # a wire body always holds its bytes
        return body.wire_bytes

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
        self.flush()  # the index is level first, so its head is the journal's
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
        if self.indexer is not None:  # the segment in one read_json, then follow on
            recover_index(self.index, self.layout, self._journal.head.seq)
            self.indexer.resync()
            self.indexer.follow_index()

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
        return event

    def sync(self) -> None:
        """fsync the journal: what was appended now survives power loss too."""
        self._journal.sync()

    def flush(self) -> int:
        """Bring the index (when this log indexes) and its followers level with the
        journal now; returns how many events were inserted."""
        return self.indexer.catch_up() if self.indexer is not None else 0

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


# The session `as_recorded` redacts under: no recorder names a session so.
_UNRECORDED = "\x00unrecorded"


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
            f"cannot read the journal of {layout.root} ({first_line(exc)}); run p3log verify"
        ) from exc
