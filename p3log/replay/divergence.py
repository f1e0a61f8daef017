"""A divergence: the live peer did something the recording cannot account for.

`Divergence` says what arrived (normalised), what the recording expected instead
(each candidate, with the first place it differs when the types agree), and what the
replay does about it. It renders as one line for people (`summary`) and as the
details of a `replay_divergence` lifecycle event (`details`). `error_reply` builds
the answer of `--on-unexpected error`.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import attrs

from p3log.protocol import jsontext
from p3log.protocol.dialect import Dialect
from p3log.replay.normalise import Difference

__all__ = [
    "DIVERGENCE_ERROR_SOURCE",
    "DIVERGENCE_ERROR_TYPE",
    "Arrival",
    "Divergence",
    "Expectation",
    "OnUnexpected",
    "error_reply",
]

OnUnexpected = Literal["fail", "skip", "error"]
DivergenceRule = Literal["unexpected_message", "closed_early"]

DIVERGENCE_ERROR_TYPE = "PARAMETER_INVALID"
DIVERGENCE_ERROR_SOURCE = "PARAMETER"
_LISTED = 3  # candidates named in the one-line summary


@attrs.frozen
class Arrival:
    """What the live peer sent: envelope strings and the normalised message, or the
    raw bytes when they were not a JSON object."""

    msg_type: str | None
    tag: str | None
    resource: str | None
    normalised: dict[str, Any] | None
    raw: bytes = attrs.field(repr=False)

    def describe(self) -> str:
        if self.normalised is None:
            return "bytes that are not a JSON object"
        what = self.msg_type or "a message with no type"
        return what + (f" (tag {self.tag})" if self.tag else "")

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"msg_type": self.msg_type, "tag": self.tag}
        found["resource"] = self.resource
        if self.normalised is not None:
            found["message"] = self.normalised
        else:
            found["raw_b64"] = base64.b64encode(self.raw).decode("ascii")
        return found


@attrs.frozen
class Expectation:
    """One recorded message the replay was ready for (normalised)."""

    seq: int
    sender: str
    msg_type: str | None
    tag: str | None
    resource: str | None
    normalised: dict[str, Any] | None
    difference: Difference | None = None

    def describe(self) -> str:
        return f"{self.msg_type or 'malformed bytes'} (seq {self.seq})"

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "seq": self.seq,
            "sender": self.sender,
            "msg_type": self.msg_type,
            "tag": self.tag,
            "resource": self.resource,
            "message": self.normalised,
        }
        if self.difference is not None:
            found["differs_at"] = {
                "path": self.difference.path,
                "recorded": self.difference.recorded,
                "got": self.difference.got,
            }
        return found


@attrs.frozen
class Divergence:
    """A live message that matches nothing the recording allows now, or a POS that
    closed the connection while the recording still had messages to exchange."""

    rule: DivergenceRule
    action: OnUnexpected
    arrival: Arrival | None
    expected: tuple[Expectation, ...]
    # What the replay sends back (--on-unexpected error), if anything.
    reply: bytes | None = attrs.field(default=None, repr=False)

    def summary(self) -> str:
        """One line: what arrived, what was expected, where the closest one differs."""
        if self.rule == "closed_early":
            head = "the POS closed the connection"
        else:
            assert self.arrival is not None
            head = f"the POS sent {self.arrival.describe()}"
        if not self.expected:
            return f"{head}, but the recording expected nothing more from the POS"
        pos = [e for e in self.expected if e.sender == "client"]
        if not pos:
            first = self.expected[0]
            return (
                f"{head}, but the recording still had server messages to send, "
                f"starting with {first.describe()}"
            )
        named = " or ".join(e.describe() for e in pos[:_LISTED])
        more = f" (or {len(pos) - _LISTED} more)" if len(pos) > _LISTED else ""
        line = f"{head}, but the recording expected {named}{more}"
        closest = next((e for e in pos if e.difference is not None), None)
        if closest is not None:
            line += f"; {closest.describe()} differs at {closest.difference}"
        return line

    def details(self) -> bytes:
        """The `replay_divergence` event's details, as JSON (exact numbers kept)."""
        found: dict[str, Any] = {
            "rule": self.rule,
            "action": self.action,
            "summary": self.summary(),
            "arrived": self.arrival.to_json() if self.arrival is not None else None,
            "expected": [expectation.to_json() for expectation in self.expected],
        }
        return jsontext.dumps(found).encode()


def error_reply(arrived: dict[str, Any] | None, dialect: Dialect, message: str) -> bytes | None:
    """The error response to a request the recording does not have; None when what
    arrived is no request (nothing answers it).

    Shaped like any server's refusal: the request's `*_RESPONSE` (the dialect's abort
    response for an abort), its tag and resource echoed, status ERROR, and a
    dialect-shaped error object of type PARAMETER_INVALID.
    """
    if arrived is None or not isinstance(msg_type := arrived.get("type"), str):
        return None
    if msg_type == dialect.abort.request_type:
        response_type = dialect.abort.response_type
    elif msg_type.endswith("_REQUEST") and len(msg_type) > len("_REQUEST"):
        response_type = msg_type.removesuffix("_REQUEST") + "_RESPONSE"
    else:
        return None
    tag = arrived.get("tag")
    reply: dict[str, Any] = {"type": response_type, "tag": tag if isinstance(tag, str) else None}
    if "resource" in arrived:
        reply["resource"] = arrived["resource"]
    reply["status"] = "ERROR"
    reply["error"] = {
        dialect.error.type_key: DIVERGENCE_ERROR_TYPE,
        dialect.error.source_key: DIVERGENCE_ERROR_SOURCE,
        dialect.error.message_key: message,
    }
    return jsontext.dumps(reply).encode()
