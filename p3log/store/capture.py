"""Turn what was observed on a link into redacted event bodies.

This is the one door into the store: every byte passes the redactor here, before
it is parsed, journaled, indexed or logged, so nothing downstream ever holds a
merchant secret or a full card number.

The recorder is deliberately more forgiving than a P3 peer: it accepts the
documentation's non-strict JSON (and says so in `parse_note`), and keeps bytes that
are not P3 at all as `malformed` events with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import orjson

from p3log.protocol.jsontext import dumps
from p3log.protocol.parse import (
    Envelope,
    Malformed,
    MalformedReason,
    read_envelope,
    string_or_none,
)
from p3log.store.event import MALFORMED, MESSAGE, WIRE_KINDS, EventBody, Sender, Stamp
from p3log.store.redact import REDACTION_POLICY, Redactor

LENIENT_NOTE = "lenient JSON: comments or trailing commas were accepted"
_LIFECYCLE_KIND = re.compile(r"[a-z][a-z0-9_]*\Z")
_NOT_JSON = frozenset({MalformedReason.NOT_UTF8, MalformedReason.NOT_JSON})


def wire_body(
    redactor: Redactor, session_id: str, sender: Sender, data: bytes, stamp: Stamp
) -> EventBody:
    """The event for bytes a peer sent: a message, or malformed with the reason."""
    if sender == "tap":
        raise ValueError("wire events are sent by 'client' or 'server', not 'tap'")
    redacted = redactor.redact(data)
    parsed = _strict_envelope(redacted.data) or read_envelope(redacted.data, lenient=True)
    strict_json = not parsed.lenient and not (
        isinstance(parsed, Malformed) and parsed.reason in _NOT_JSON
    )
    # Valid JSON is kept as the text that arrived; anything else keeps its raw bytes,
    # with a strict re-serialisation as payload when it could still be read.
    raw: bytes | None = redacted.data
    payload: str | None = None
    if strict_json:
        payload, raw = redacted.data.decode(), None
    elif isinstance(parsed, Envelope) or parsed.obj is not None:
        payload = dumps(parsed.obj)
    if isinstance(parsed, Envelope):
        kind, note = MESSAGE, (LENIENT_NOTE if parsed.lenient else None)
    else:
        kind, note = MALFORMED, str(parsed)
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
        redactions=redacted.rules,
    )


def lifecycle_body(
    redactor: Redactor,
    session_id: str,
    kind: str,
    details: Mapping[str, object] | bytes,
    stamp: Stamp,
) -> EventBody:
    """The event for something the tap itself observed (`details` as JSON)."""
    if kind in WIRE_KINDS or not _LIFECYCLE_KIND.match(kind):
        raise ValueError(f"{kind!r} is not a lifecycle kind (lower_snake_case, not a wire kind)")
    data = details if isinstance(details, bytes) else json.dumps(details).encode()
    redacted = redactor.redact(data)
    return EventBody(
        session_id=session_id,
        sender="tap",
        kind=kind,
        msg_type=None,
        tag=None,
        resource=None,
        status=None,
        stamp=stamp,
        payload=redacted.data.decode(),
        raw=None,
        parse_note=None,
        redaction_policy=REDACTION_POLICY,
        redactions=redacted.rules,
    )


def _strict_envelope(data: bytes) -> Envelope | None:
    """The common case, cheaply: strict JSON, an object, a string `type`.

    orjson accepts a subset of what `read_envelope` accepts (it also refuses integers
    beyond 64 bits and lone surrogates), so whenever it says yes the careful path
    would have said the same; everything else takes the careful path.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(msg_type := obj.get("type"), str):
        return None
    return Envelope.of(obj, msg_type, lenient=False)
