"""An event as the projections see it: the columns they read, the body parsed late.

The fold reads a few body fields of a few message types (an update's state, a
response's transaction), so the payload is parsed only when one is asked for.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from p3log.protocol.model import body_key

# Column order of `EVENT_COLUMNS_SQL`, which is the order `Observed` takes them in.
EVENT_COLUMNS_SQL = (
    "seq, session_id, sender, kind, msg_type, tag, resource, status, "
    "epoch_us(recorded_at) AS at_us, payload, parse_note"
)

_AMOUNT_PLACES = Decimal("0.0001")


class Observed:
    """One event. `at_us` is its recorded time (UTC microseconds)."""

    __slots__ = (
        "_envelope",
        "at_us",
        "kind",
        "msg_type",
        "parse_note",
        "payload",
        "resource",
        "sender",
        "seq",
        "session_id",
        "status",
        "tag",
    )

    def __init__(
        self,
        seq: int,
        session_id: str,
        sender: str,
        kind: str,
        msg_type: str | None,
        tag: str | None,
        resource: str | None,
        status: str | None,
        at_us: int,
        payload: str | None,
        parse_note: str | None,
    ) -> None:
        self.seq = seq
        self.session_id = session_id
        self.sender = sender
        self.kind = kind
        self.msg_type = msg_type
        self.tag = tag
        self.resource = resource
        self.status = status
        self.at_us = at_us
        self.payload = payload
        self.parse_note = parse_note
        self._envelope: dict[str, Any] | None = None

    def envelope(self) -> dict[str, Any]:
        """The whole message object ({} when the payload is not a JSON object)."""
        if self._envelope is None:
            try:
                value = orjson.loads(self.payload) if self.payload else {}
            except orjson.JSONDecodeError:  # lenient JSON, as in the docs' examples
                value = {}
            self._envelope = value if isinstance(value, dict) else {}
        return self._envelope

    def body(self) -> dict[str, Any]:
        """The message's body object, named after its type ({} when absent)."""
        value = self.envelope().get(_body_key(self.msg_type)) if self.msg_type else None
        return value if isinstance(value, dict) else {}

    def error_type(self, type_key: str) -> str | None:
        error = self.envelope().get("error")
        return text(error.get(type_key)) if isinstance(error, dict) else None


@functools.lru_cache(maxsize=256)
def _body_key(msg_type: str) -> str:
    return body_key(msg_type)


def text(value: object) -> str | None:
    """A JSON value as text for a VARCHAR column; None stays None."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def amount(value: object) -> Decimal | None:
    """A JSON number as an amount of at most four decimal places, or None if it is
    not one (a peer's odd value must not stop a projection)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        result = Decimal(repr(value) if isinstance(value, float) else value)
        quantized = result.quantize(_AMOUNT_PLACES)
    except (InvalidOperation, ValueError):
        return None
    if quantized != result or not quantized.is_finite() or quantized.adjusted() >= 15:
        return None
    return quantized
