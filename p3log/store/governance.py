"""What governs redaction, kept under the chain: the policy and the fingerprint key id.

A writer appends a `redaction_configured` event (sender `tap`, session `store`;
details: store tag, policy, key id, reason) when the configuration it records with is
not yet in the chain: before the first event whose redaction made a fingerprint (until
then the key governs nothing), at once when it moves the key out of an old store, and
at once when a newer policy records into a store that has one. store.json is restated
first and says the same. Every event also carries its policy inside its hash.

So an edit of store.json, or a key swapped for another, disagrees with the chain: a
writer refuses the store (one line), `p3log verify` reports it, and `verify --against`
a checkpoint (which holds the configuration) reports a change no later event records.
Events imported from another store keep that store's `redaction_configured` events
(another store id): they describe the fingerprints those events came with.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mmap
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs
import duckdb

from p3log.store.errors import StoreCorrupt, StoreError
from p3log.store.index import connect, journal_relation_sql
from p3log.store.journal import segment_paths
from p3log.store.keys import (
    FingerprintKey,
    FingerprintKeyError,
    keep_key,
    key_for_store,
    named_key_file,
    read_key_file,
)
from p3log.store.layout import StoreLayout, StoreMeta, write_meta
from p3log.store.lifecycle import RedactionConfigured, read
from p3log.store.records import RecordError, decode_canonical, decode_event
from p3log.store.redact import REDACTION_POLICY, Redactor

logger = logging.getLogger("p3log")

GOVERNANCE_KIND = RedactionConfigured.KIND
GOVERNANCE_SESSION = "store"


@attrs.frozen
class Governance:
    redaction_policy: str
    key_id: str | None

    @classmethod
    def of_meta(cls, meta: StoreMeta) -> Governance:
        return cls(meta.redaction_policy, meta.key_id)


@attrs.frozen
class Recorded:
    """The latest `redaction_configured` event of a store, and where it is."""

    seq: int
    governance: Governance


def latest_recorded(
    con: duckdb.DuckDBPyConnection, relation_sql: str, store_id: str
) -> Recorded | None:
    """The store's latest configuration in the events `relation_sql` selects."""
    rows = con.execute(
        f"SELECT seq, payload FROM ({relation_sql}) WHERE kind = ? AND sender = 'tap' "
        "ORDER BY seq DESC",
        [GOVERNANCE_KIND],
    ).fetchall()
    return latest_of(rows, store_id)


def latest_of(rows: Iterable[tuple[int, str | None]], store_id: str) -> Recorded | None:
    """The store's latest configuration among (seq, payload) of the chain's
    configuration events (kind GOVERNANCE_KIND, sender tap), newest first."""
    for seq, payload in rows:
        details = _details_of(payload, store_id)
        if details is None:
            continue  # another store's, imported with its events
        policy, key_id = details.redaction_policy, details.key_id
        return Recorded(int(seq), Governance(str(policy), key_id))
    return None


def configures(payload: str | None, store_id: str) -> bool:
    """Whether a `redaction_configured` event's payload is about the store `store_id`."""
    return _details_of(payload, store_id) is not None


def _details_of(payload: str | None, store_id: str) -> RedactionConfigured | None:
    details = read(GOVERNANCE_KIND, payload)
    if not isinstance(details, RedactionConfigured) or details.store != store_tag(store_id):
        return None
    return details


def store_tag(store_id: str) -> str:
    """The store's id as a configuration names it: base32 of its SHA-256, since a uuid
    can hold a dash-separated digit run that the card-number rule would mask."""
    digest = hashlib.sha256(store_id.encode()).digest()[:15]
    return base64.b32encode(digest).decode().lower()


def recorded_in_journal(journal_dir: Path, store_id: str) -> Recorded | None:
    """The store's latest configuration in the journal, found without the index (the
    tap does not open it): the segments are searched from the newest back for the
    bytes `"kind":"redaction_configured"`, which can stand in a record line only as
    its kind (inside a JSON string the quotes are escaped), and only the lines that
    hold them are decoded. A byte search of the page cache: about 0.1 s per GB of
    journal, where the configuration is far back; at once where it is recent."""
    for path in reversed(segment_paths(journal_dir)):
        size = path.stat().st_size
        if size == 0:
            continue
        with path.open("rb") as segment, mmap.mmap(segment.fileno(), 0, prot=mmap.PROT_READ) as m:
            end = size
            while (hit := m.rfind(_GOVERNANCE_BYTES, 0, end)) != -1:
                start, stop = m.rfind(b"\n", 0, hit) + 1, m.find(b"\n", hit)
                end = start
                if stop == -1:
                    continue  # a torn last line: not an event
                try:
                    event = decode_event(decode_canonical(m[start : stop + 1]))
                except RecordError as exc:
                    raise StoreCorrupt(
                        f"a redaction_configured record of {path} is damaged ({exc}); "
                        "run p3log verify"
                    ) from exc
                details = _details_of(event.body.payload, store_id)
                if event.body.sender == "tap" and details is not None:
                    governance = Governance(str(details.redaction_policy), details.key_id)
                    return Recorded(event.seq, governance)
    return None


_GOVERNANCE_BYTES = b'"kind":"%s"' % GOVERNANCE_KIND.encode()


# --- the writer's side -----------------------------------------------------------


@attrs.frozen
class ChosenKey:
    """The key a writer will record with, chosen before it touches the store."""

    key: FingerprintKey
    path: Path | None  # None: still inside the store, as `redaction.key`


def choose_key(layout: StoreLayout, meta: StoreMeta) -> ChosenKey:
    """The store's fingerprint key; refuses (one line, store unchanged) any other."""
    if meta.key_id is not None:
        key, path = key_for_store(meta.key_id)
        return ChosenKey(key, path)
    if not layout.legacy_key_path.exists():
        raise FingerprintKeyError(
            f"{layout.meta_path} names no fingerprint key id and the store holds no key"
        )
    key = read_key_file(layout.legacy_key_path)
    named = named_key_file()
    if named is not None and named.exists() and read_key_file(named) != key:
        raise FingerprintKeyError(
            f"{named} is not the fingerprint key of {layout.root} (the store holds its own, "
            f"id {key.id}); refusing to mix fingerprints of two keys in one store"
        )
    return ChosenKey(key, None)


class WatchedRedactor(Redactor):
    """A redactor that notes when it used the key (made a fingerprint)."""

    def __init__(self, key: bytes) -> None:
        super().__init__(key)
        self.used_key = False

    def fingerprint(self, secret: str) -> str:
        self.used_key = True
        return super().fingerprint(secret)


class Governor:
    """Keeps a recording writer's configuration, store.json and the chain in step."""

    def __init__(self, layout: StoreLayout, meta: StoreMeta, key: FingerprintKey) -> None:
        self.layout = layout
        self.meta = meta
        self.key = key
        self.redactor = WatchedRedactor(key.secret)
        self.key_file: Path | None = None
        self._why: str | None = None  # why a redaction_configured event is due
        self.urgent = False  # due now, not at the first fingerprint

    @classmethod
    def start(
        cls,
        layout: StoreLayout,
        meta: StoreMeta,
        chosen: ChosenKey,
        recorded: Recorded | None,
    ) -> Governor:
        """Under the writer lock, given the latest configuration the journal records
        (`recorded_in_journal`): refuse a store.json the chain contradicts, and see
        what must be recorded."""
        moved = chosen.path is None
        key_file = _move_key_out(layout, meta, chosen.key) if moved else chosen.path
        if moved:
            meta = attrs.evolve(meta, key_id=chosen.key.id)
        elif layout.legacy_key_path.exists():  # a move killed before its last step
            if read_key_file(layout.legacy_key_path) != chosen.key:
                raise FingerprintKeyError(
                    f"{layout.legacy_key_path} is not the key store.json names; remove it"
                )
            _remove_legacy_key(layout)
        current = Governance(REDACTION_POLICY, chosen.key.id)
        stated = Governance.of_meta(meta)
        # store.json is restated before the event that changes the configuration, so
        # a kill in between leaves store.json ahead of the chain with this writer's
        # policy: the one disagreement that is not an edit (the event is due again).
        interrupted = (
            stated == current
            and recorded is not None
            and (recorded.governance.key_id == current.key_id)
        )
        if recorded is not None and recorded.governance != stated and not interrupted:
            raise StoreCorrupt(
                f"store.json of {layout.root} disagrees with the chain (seq "
                f"{recorded.seq}): {_differences(meta, recorded.governance)}; it was "
                "changed outside p3log: run p3log verify"
            )
        governor = cls(layout, meta, chosen.key)
        governor.key_file = key_file
        if recorded is None:
            # Due at the first fingerprint: until the key is used, it governs nothing.
            governor._why = "moved out of the store" if moved else "first fingerprint"
            governor.urgent = moved
        elif recorded.governance != current:
            governor._why = (
                f"redaction policy {recorded.governance.redaction_policy} -> {REDACTION_POLICY}"
            )
            governor.urgent = True  # a new policy governs every event from the next on
        return governor

    def due(self) -> bool:
        """Whether the configuration is to be appended before the event just redacted:
        one is due, and that event's redaction used the key (or it is due at once)."""
        used, self.redactor.used_key = self.redactor.used_key, False
        return self._why is not None and (used or self.urgent)

    def configuration(self) -> RedactionConfigured:
        """The `redaction_configured` event this writer records."""
        return RedactionConfigured(
            store=store_tag(self.meta.store_id),
            redaction_policy=REDACTION_POLICY,
            key_id=self.key.id,
            reason=self._why,
        )

    def restate(self) -> None:
        """Before the configuration event is appended: store.json says it first."""
        current = Governance(REDACTION_POLICY, self.key.id)
        if Governance.of_meta(self.meta) != current:
            self.meta = attrs.evolve(
                self.meta, redaction_policy=REDACTION_POLICY, key_id=self.key.id
            )
            write_meta(self.layout, self.meta)

    def appended(self) -> None:
        """The configuration event is in the journal."""
        self._why, self.urgent = None, False


def _differences(meta: StoreMeta, other: Governance, where: str = "the chain") -> str:
    stated = Governance.of_meta(meta)
    return ", ".join(
        f"{name.replace('_', ' ')} {getattr(stated, name)} in store.json, "
        f"{getattr(other, name)} in {where}"
        for name in ("key_id", "redaction_policy")
        if getattr(stated, name) != getattr(other, name)
    )


def _move_key_out(layout: StoreLayout, meta: StoreMeta, key: FingerprintKey) -> Path:
    """A store from before key ids: keep its key outside, name it in store.json, then
    delete it from the store. Each step is durable before the next, so a kill at any
    point leaves the key in one place or both, never in none."""
    named = named_key_file()
    path = keep_key(key, named) if named is not None else keep_key(key)
    write_meta(layout, attrs.evolve(meta, key_id=key.id))
    _remove_legacy_key(layout)
    logger.warning(
        "moved the fingerprint key of %s out of the store to %s (key id %s)",
        layout.root,
        path,
        key.id,
    )
    return path


def _remove_legacy_key(layout: StoreLayout) -> None:
    try:
        layout.legacy_key_path.unlink()
    except OSError as exc:
        raise StoreError(f"cannot remove {layout.legacy_key_path}: {exc.strerror}") from exc


# --- the verifier's side ---------------------------------------------------------


def governance_problems(
    layout: StoreLayout,
    meta: StoreMeta,
    checkpoint: tuple[int, Governance | None] | None,
    configurations: Sequence[tuple[int, str | None]] | None = None,
) -> list[tuple[int, str, str]]:
    """(seq, where, reason) for each way the store's redaction configuration is not
    what the chain, or the checkpoint (its count and configuration), says it is.
    `configurations`: the chain's configuration events as (seq, payload), for a caller
    that has read the journal already (None: they are read from it here)."""
    if layout.legacy_key_path.exists():
        return [
            (
                0,
                "store",
                "the store holds its fingerprint key (redaction.key): whoever has a copy can "
                "test guesses of merchant secrets; record into it once to move the key out",
            )
        ]
    if configurations is not None:
        recorded = latest_of(sorted(configurations, reverse=True), meta.store_id)
    elif relation := journal_relation_sql(layout.journal_dir, ignore_errors=True):
        with connect() as con:
            recorded = latest_recorded(con, relation, meta.store_id)
    else:
        recorded = None
    problems = []
    if recorded is not None and recorded.governance != Governance.of_meta(meta):
        problems.append(
            (
                recorded.seq,
                "store.json",
                f"disagrees with the chain's redaction configuration from this seq on: "
                f"{_differences(meta, recorded.governance)}",
            )
        )
    if checkpoint is not None:
        count, pinned = checkpoint
        # A change after the checkpoint is under the chain, and checked above.
        changed_since = recorded is not None and recorded.seq > count
        if pinned is not None and not changed_since and pinned != Governance.of_meta(meta):
            differences = _differences(meta, pinned, "the checkpoint")
            problems.append(
                (
                    count,
                    "checkpoint",
                    f"the redaction configuration changed, and no event says so: {differences}",
                )
            )
    return problems
