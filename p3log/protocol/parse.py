"""Bytes to P3 messages and back, without ever raising on what a peer sent.

Two readers, one per need:

- `read_envelope` is the recorder's: UTF-8, JSON, an object with a string `type`,
  and nothing more, because it runs on the tap's hot path;
- `parse` is everyone else's: the same checks, then the typed `Message`.

Both answer `Malformed` (with the reason and one line of detail) instead of
raising. Leniency (the documentation's comments and trailing commas) is tried only
when strict JSON fails, and the result says when it was needed: `lenient` on
`Envelope` and `Malformed`, and `Message.lenient` from `parse`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import attrs

from p3log.protocol import jsontext
from p3log.protocol.convert import FieldTypeError, converter_for
from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.model import Message

__all__ = [
    "Envelope",
    "Malformed",
    "MalformedReason",
    "envelope_of",
    "parse",
    "read_envelope",
    "serialize",
]


class MalformedReason(StrEnum):
    """Why bytes are not a P3 message; the value is the phrase `Malformed` prints."""

    NOT_UTF8 = "not UTF-8"
    NOT_JSON = "not JSON"
    NOT_OBJECT = "not an object"
    NO_TYPE = "no type"
    BAD_FIELD = "bad field"


@attrs.frozen
class Malformed:
    """Bytes that are not a P3 message, and why.

    `obj` is the decoded JSON object when the bytes were one (NO_TYPE, BAD_FIELD);
    `lenient` says the JSON needed leniency to be read at all.
    """

    reason: MalformedReason
    detail: str
    obj: dict[str, Any] | None = None
    lenient: bool = False

    def __str__(self) -> str:
        """One line: `not JSON: Expecting ',' delimiter at line 1 column 17`."""
        return f"{self.reason}: {self.detail}"


@attrs.frozen
class Envelope:
    """The recorder's view of a message: the decoded object and its envelope strings.

    `tag`, `resource` and `status` are None unless they are strings in the JSON.
    """

    obj: dict[str, Any]
    msg_type: str
    tag: str | None
    resource: str | None
    status: str | None
    lenient: bool

    @classmethod
    def of(cls, obj: dict[str, Any], msg_type: str, *, lenient: bool) -> Envelope:
        """The envelope of a JSON object whose `type` is the string `msg_type`."""
        return cls(
            obj=obj,
            msg_type=msg_type,
            tag=string_or_none(obj.get("tag")),
            resource=string_or_none(obj.get("resource")),
            status=string_or_none(obj.get("status")),
            lenient=lenient,
        )


def read_envelope(data: bytes | str, *, lenient: bool = False) -> Envelope | Malformed:
    """Decode bytes far enough to know they are a P3 message; never raises."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Malformed(MalformedReason.NOT_UTF8, f"{exc.reason} at byte {exc.start}")
    try:
        obj, needed_leniency = jsontext.loads(text, lenient=lenient)
    except json.JSONDecodeError as exc:
        where = f"at line {exc.lineno} column {exc.colno}"
        return Malformed(MalformedReason.NOT_JSON, f"{exc.msg} {where}")
    except RecursionError:
        return Malformed(MalformedReason.NOT_JSON, "nested too deeply")
    except ValueError as exc:  # NaN, Infinity, or an integer too long to convert
        return Malformed(MalformedReason.NOT_JSON, " ".join(str(exc).split()))
    return envelope_of(obj, lenient=needed_leniency)


def envelope_of(obj: Any, *, lenient: bool = False) -> Envelope | Malformed:
    """The envelope of a decoded JSON value, or why it is not a P3 message."""
    if not isinstance(obj, dict):
        got = f"got {jsontext.json_kind(obj)}"
        return Malformed(MalformedReason.NOT_OBJECT, got, None, lenient)
    msg_type = obj.get("type")
    if not isinstance(msg_type, str):
        detail = (
            'there is no "type" key'
            if "type" not in obj
            else f'"type" is {jsontext.json_kind(msg_type)}, not string'
        )
        return Malformed(MalformedReason.NO_TYPE, detail, obj, lenient)
    return Envelope.of(obj, msg_type, lenient=lenient)


def parse(
    data: bytes | str, dialect: Dialect = DEFAULT_DIALECT, *, lenient: bool | None = None
) -> Message | Malformed:
    """The typed message in `data`, or why there is none; never raises.

    `lenient` defaults to the dialect's `lenient_json`.
    """
    envelope = read_envelope(data, lenient=dialect.lenient_json if lenient is None else lenient)
    if isinstance(envelope, Malformed):
        return envelope
    try:
        message = converter_for(dialect).structure_message(envelope.obj)
    except FieldTypeError as exc:
        return Malformed(MalformedReason.BAD_FIELD, str(exc), envelope.obj, envelope.lenient)
    return attrs.evolve(message, lenient=True) if envelope.lenient else message


def serialize(msg: Message, dialect: Dialect = DEFAULT_DIALECT) -> bytes:
    """The UTF-8 compact JSON of a message, as a peer would send it."""
    return jsontext.dumps(converter_for(dialect).unstructure_message(msg)).encode("utf-8")


def string_or_none(value: Any) -> str | None:
    """`value` if it is a string, else None (envelope keys may hold anything)."""
    return value if isinstance(value, str) else None
