"""Whether a store can redact live messages as it redacted a recording.

A replay compares each live message as the store records it (redacted by the
writer's own `Door`: the same code, policy and fingerprint key as everything else it
records) with the recorded message, which was redacted when it was recorded. The two
agree exactly when the original would have been redacted to the same text, which
holds only if the recording was redacted the same way:

- **the policy**: every message of the compared side that redaction changed carries
  the policy it was redacted under; another policy than this p3log's may mask other
  text;
- **the key**: a fingerprint (`[REDACTED merchantSecret hmac-sha256:…]`) left in a
  compared place (volatile paths aside) was made with the key of the configuration
  in force when it was recorded: the latest `redaction_configured` event before it,
  which must name this store and its key id. Events imported from another store
  follow that store's configuration (its tag, its key id), or none (an export of a
  store from before configurations); a live secret fingerprinted with this store's
  key would never equal them, and nobody can tell whether the secrets were the same.

Otherwise the replay cannot start: one line (`ReplayError`) saying why and what to
do. A missing or foreign key file never gets this far: the store's writer refuses it
before the replay opens (`governance.choose_key`).
"""

from __future__ import annotations

import duckdb

from p3log.replay.normalise import VolatilePaths, comparable
from p3log.replay.recording import Peer, RecordedMessage, RecordedSession, ReplayError
from p3log.store.governance import GOVERNANCE_KIND, store_tag
from p3log.store.layout import StoreMeta
from p3log.store.lifecycle import RedactionConfigured, read
from p3log.store.redact import REDACTION_POLICY, holds_fingerprint

__all__ = ["check_reproducible"]

_OTHER_POLICY_SQL = """
SELECT seq, redaction_policy FROM events
WHERE session_id = ? AND sender = ? AND len(redactions) > 0 AND redaction_policy <> ?
ORDER BY seq LIMIT 1
"""
_CONFIGURATION_SQL = """
SELECT seq, payload FROM events WHERE kind = ? AND sender = 'tap' AND seq < ?
ORDER BY seq DESC LIMIT 1
"""


def check_reproducible(
    con: duckdb.DuckDBPyConnection,
    meta: StoreMeta,
    session: RecordedSession,
    compared: Peer,
    volatile: VolatilePaths,
) -> None:
    """Raise `ReplayError` unless this store's redaction reproduces how the messages
    `compared` sent (the live side's) were redacted in `session` (see the module doc)."""
    # fetchall, not fetchone: the connection is the writer's, and must be left idle.
    found = con.execute(
        _OTHER_POLICY_SQL, [session.session_id, compared, REDACTION_POLICY]
    ).fetchall()
    if found:
        ((seq, policy),) = found
        raise ReplayError(
            f"session {session.session_id} was redacted under {policy} (seq {seq}), and "
            f"this p3log redacts under {REDACTION_POLICY}: live messages cannot be "
            "redacted as the recording was, so they cannot be compared with it"
        )
    marked = next((m for m in _of(session, compared) if _compares_fingerprint(m, volatile)), None)
    if marked is None:
        return
    rows = con.execute(_CONFIGURATION_SQL, [GOVERNANCE_KIND, marked.seq]).fetchall()
    config = read(GOVERNANCE_KIND, rows[0][1]) if rows else None
    ours = (
        isinstance(config, RedactionConfigured)
        and config.store == store_tag(meta.store_id)
        and config.key_id == meta.key_id
    )
    if not ours:
        # No configuration before it at all: imported from a store that recorded none,
        # or recorded before stores did; either way unconfirmed, so refused.
        raise ReplayError(
            f"{marked.describe()} of session {session.session_id} holds a fingerprint "
            "this store's key did not make (imported from another store, or recorded "
            "before the store named its key), so a live secret cannot be compared with "
            "it: replay it in the store that recorded it, or leave the field uncompared "
            "with --ignore-path PATH"
        )


def _of(session: RecordedSession, sender: Peer) -> tuple[RecordedMessage, ...]:
    return session.pos_messages if sender == "client" else session.server_messages


def _compares_fingerprint(message: RecordedMessage, volatile: VolatilePaths) -> bool:
    """Whether a keyed marker stands in a place of `message` that is compared."""
    if message.payload is None:
        return holds_fingerprint(message.text)
    return holds_fingerprint(comparable(message.payload, volatile))
