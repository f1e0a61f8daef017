"""Turn what was observed on a link into redacted event bodies.

This is the one door into the store: every byte passes the redactor here, before it is
parsed, journaled, indexed or logged, so nothing downstream ever holds a merchant secret
or a full card number. What is stored is redacted: the bytes (`raw`), and also the
payload when it is not those bytes (lenient JSON re-serialised from its parse) is redacted
again, so a rule can never be bypassed by what the re-serialisation decodes.

The door remembers the merchant secrets of each open session (`SessionSecrets`), so the
same value is replaced wherever else it appears in that session, also earlier in the
message that carries it; a session's memory is dropped when it ends (`SESSION_END_KINDS`).

The recorder is deliberately more forgiving than a P3 peer: it accepts the
documentation's non-strict JSON (and says so in `parse_note`), and keeps bytes that
are not P3 at all as `malformed` events with the reason.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

import orjson

from p3log.protocol.jsontext import dumps
from p3log.protocol.parse import (
    Envelope,
    Malformed,
    MalformedReason,
    envelope_of,
    read_envelope,
    string_or_none,
)
from p3log.store.event import MALFORMED, MESSAGE, WIRE_KINDS, EventBody, Sender, Stamp
from p3log.store.handshake import HandshakeRedaction
from p3log.store.lifecycle import SESSION_END_KINDS
from p3log.store.redact import REDACTION_POLICY, Redacted, Redactor, unchecked

LENIENT_NOTE = "lenient JSON: comments or trailing commas were accepted"
# Reading lenient JSON costs a regex pass per string (about 40 ms a MiB), on the event loop:
# it is tried only on messages up to this size that have a comment or a trailing comma to
# forgive; a larger one is recorded as malformed, its bytes (redacted) kept.
LENIENT_MAX_BYTES: Final = 64 * 1024
_MAY_BE_LENIENT: Final = re.compile(rb"/|,[ \t\r\n]*[}\]]")
# After these the tap records nothing more in that session.
_LIFECYCLE_KIND = re.compile(r"[a-z][a-z0-9_]*\Z")
_NOT_JSON = frozenset({MalformedReason.NOT_UTF8, MalformedReason.NOT_JSON})


class SessionSecrets:
    """The merchant secrets seen in each open session, bounded: at most `PER_SESSION` per
    session (the latest), and `SESSIONS` sessions (the least recently active is dropped
    first, so only a session idle behind thousands of others can lose its memory)."""

    SESSIONS: Final = 4096
    PER_SESSION: Final = 8

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def known(self, session_id: str) -> tuple[str, ...]:
        return self._sessions.get(session_id, ())

    def remember(self, session_id: str, secrets: tuple[str, ...]) -> None:
        if not secrets:
            return
        merged = tuple(dict.fromkeys((*self.known(session_id), *secrets)))
        self._sessions[session_id] = merged[-self.PER_SESSION :]
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self.SESSIONS:
            self._sessions.popitem(last=False)

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


class Door:
    """Redacts and classifies everything a store records, with per-session memory."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.secrets = SessionSecrets()

    def _redact(self, session_id: str, data: bytes) -> Redacted:
        redacted = self.redactor.redact(data, self.secrets.known(session_id))
        self.secrets.remember(session_id, redacted.secrets)
        return redacted

    def wire_body(self, session_id: str, sender: Sender, data: bytes, stamp: Stamp) -> EventBody:
        """The event for bytes a peer sent: a message, or malformed with the reason."""
        if sender == "tap":
            raise ValueError("wire events are sent by 'client' or 'server', not 'tap'")
        redacted = self._redact(session_id, data)
        rules = set(redacted.rules)
        parsed = _strict_envelope(redacted.data)
        if parsed is None:
            parsed = read_envelope(redacted.data, lenient=_may_be_lenient(redacted.data))
        strict_json = not parsed.lenient and not (
            isinstance(parsed, Malformed) and parsed.reason in _NOT_JSON
        )
        # Valid JSON is kept as the text that arrived; anything else keeps its raw bytes,
        # with a strict re-serialisation as payload when it could still be read, redacted
        # in its own right.
        raw: bytes | None = redacted.data
        payload: str | None = None
        if strict_json:
            payload, raw = redacted.data.decode(), None
        if isinstance(parsed, Envelope):
            kind, note = MESSAGE, (LENIENT_NOTE if parsed.lenient else None)
        else:
            kind, note = MALFORMED, str(parsed)
        if not strict_json and (isinstance(parsed, Envelope) or parsed.obj is not None):
            again = self._redact(session_id, dumps(parsed.obj).encode())
            payload = again.data.decode("utf-8", "replace")
            rules.update(again.rules)
            if again.rules:  # the envelope too must come from the redacted text
                parsed = read_envelope(again.data)
        fields = parsed.obj if parsed.obj is not None else {}
        return EventBody(
            session_id=session_id,
            sender=sender,
            kind=kind,
            msg_type=string_or_none(fields.get("type")),
            tag=string_or_none(fields.get("tag")),
            resource=string_or_none(fields.get("resource")),
            status=string_or_none(fields.get("status")),
            stamp=stamp,
            payload=payload,
            raw=raw,
            parse_note=note,
            redaction_policy=REDACTION_POLICY,
            redactions=tuple(sorted(rules)),
        )

    def lifecycle_body(
        self,
        session_id: str,
        kind: str,
        details: Mapping[str, object] | bytes,
        stamp: Stamp,
    ) -> EventBody:
        """The event for something the tap itself observed (`details` as JSON)."""
        if kind in WIRE_KINDS or not _LIFECYCLE_KIND.match(kind):
            raise ValueError(
                f"{kind!r} is not a lifecycle kind (lower_snake_case, not a wire kind)"
            )
        rules: set[str] = set()
        data = details if isinstance(details, bytes) else b""
        fields = _as_mapping(details)
        try:
            if fields is not None:
                handshake = HandshakeRedaction(
                    self.redactor, fields, self.secrets.known(session_id)
                )
                rules.update(handshake.rules)
                self.secrets.remember(session_id, tuple(handshake.secrets))
                if handshake.rules or not data:  # imported details stay as they were
                    data = json.dumps(handshake.details).encode()
            redacted = self._redact(session_id, data)
        except RecursionError:  # imported details nested too deeply to walk: fail closed
            redacted, rules = unchecked(len(data)), set()
        if kind in SESSION_END_KINDS:
            self.secrets.forget(session_id)
        return EventBody(
            session_id=session_id,
            sender="tap",
            kind=kind,
            msg_type=None,
            tag=None,
            resource=None,
            status=None,
            stamp=stamp,
            payload=redacted.data.decode("utf-8", "replace"),
            raw=None,
            parse_note=None,
            redaction_policy=REDACTION_POLICY,
            redactions=tuple(sorted(rules | set(redacted.rules))),
        )


def _may_be_lenient(data: bytes) -> bool:
    return len(data) <= LENIENT_MAX_BYTES and _MAY_BE_LENIENT.search(data) is not None


def _as_mapping(details: Mapping[str, object] | bytes) -> Mapping[str, Any] | None:
    """The details as a mapping; bytes (an imported event's) only if they are an object."""
    if not isinstance(details, bytes):
        return details
    try:
        value = json.loads(details)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _strict_envelope(data: bytes) -> Envelope | Malformed | None:
    """The common case, cheaply: strict JSON read once, at C speed; None if it is not.

    orjson accepts a subset of what `read_envelope` accepts (it also refuses integers
    beyond 64 bits and lone surrogates), so whenever it says yes the careful path
    would have said the same; everything else takes the careful path. Its numbers may
    be floats, but only the envelope's strings are read from this object.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return envelope_of(obj)
