"""A divergence: the live peer did something the recording cannot account for.

`Divergence` says what arrived (normalised), what the recording expected instead
(each candidate, with the first place it differs when the types agree), and what the
replay does about it. The live peer is the POS in serve mode and the server in drive
mode (`peer`). It renders as one line for people (`summary`) and as the
details of a `replay_divergence` lifecycle event (`details`). `error_reply` builds
the answer of `--on-unexpected error`.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import attrs

from p3log.protocol import jsontext
from p3log.protocol.dialect import Dialect
from p3log.protocol.kinds import Kinds
from p3log.replay.normalise import Difference, VolatilePaths, first_difference, normalise
from p3log.replay.recording import RecordedMessage
from p3log.store.lifecycle import ReplayDivergence

__all__ = [
    "DIVERGENCE_ERROR_SOURCE",
    "DIVERGENCE_ERROR_TYPE",
    "Arrival",
    "Divergence",
    "DivergenceAction",
    "Expectation",
    "OnUnexpected",
    "Peer",
    "arrival_of",
    "error_reply",
    "expectation_of",
]

OnUnexpected = Literal["fail", "skip", "error"]
#: What the replay did about a divergence: serve's `--on-unexpected` choices, and
#: drive's `continue`.
DivergenceAction = Literal["fail", "skip", "error", "continue"]
DivergenceRule = Literal["unexpected_message", "closed_early", "timeout"]
Peer = Literal["POS", "server"]

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
    """A live message that matches nothing the recording allows now, a peer that
    closed the connection while the recording still had messages to exchange, or (drive
    mode) a server that did not send what the recording expected in time (`waited`
    seconds)."""

    rule: DivergenceRule
    action: DivergenceAction
    arrival: Arrival | None
    expected: tuple[Expectation, ...]
    # What the replay sends back (--on-unexpected error), if anything.
    reply: bytes | None = attrs.field(default=None, repr=False)
    peer: Peer = "POS"
    waited: float | None = None

    def summary(self) -> str:
        """One line: what arrived, what was expected, where the closest one differs."""
        peer = self.peer
        mine = "client" if peer == "POS" else "server"
        other = "server" if peer == "POS" else "POS"
        if self.rule == "closed_early":
            head = f"the {peer} closed the connection"
        elif self.rule == "timeout":
            head = f"the {peer} sent nothing the recording expected for {self.waited or 0:g} s"
        else:
            assert self.arrival is not None
            head = f"the {peer} sent {self.arrival.describe()}"
        if not self.expected:
            return f"{head}, but the recording expected nothing more from the {peer}"
        theirs = [e for e in self.expected if e.sender == mine]
        if not theirs:
            first = self.expected[0]
            return (
                f"{head}, but the recording still had {other} messages to send, "
                f"starting with {first.describe()}"
            )
        named = " or ".join(e.describe() for e in theirs[:_LISTED])
        more = f" (or {len(theirs) - _LISTED} more)" if len(theirs) > _LISTED else ""
        line = f"{head}, but the recording expected {named}{more}"
        closest = next((e for e in theirs if e.difference is not None), None)
        if closest is not None:
            line += f"; {closest.describe()} differs at {closest.difference}"
        return line

    def details(self) -> ReplayDivergence:
        """The `replay_divergence` event (its JSON keeps exact numbers)."""
        return ReplayDivergence(
            rule=self.rule,
            peer=self.peer,
            action=self.action,
            summary=self.summary(),
            arrived=self.arrival.to_json() if self.arrival is not None else None,
            expected=tuple(expectation.to_json() for expectation in self.expected),
        )


def error_reply(arrived: dict[str, Any] | None, dialect: Dialect, message: str) -> bytes | None:
    """The error response to a request the recording does not have; None when what
    arrived is no request (nothing answers it).

    Shaped like any server's refusal: the request's `*_RESPONSE` (the dialect's abort
    response for an abort), its tag and resource echoed, status ERROR, and a
    dialect-shaped error object of type PARAMETER_INVALID.
    """
    if arrived is None or not isinstance(msg_type := arrived.get("type"), str):
        return None
    response_type = Kinds(dialect).response_to(msg_type)
    if response_type is None:
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


def arrival_of(
    obj: dict[str, Any] | None, live: dict[str, Any] | None, data: bytes, volatile: VolatilePaths
) -> Arrival:
    """The `Arrival` for live bytes `data`: `obj` as decoded (its envelope strings),
    `live` the same in the recording's terms (what is normalised)."""

    def text(key: str) -> str | None:
        value = obj.get(key) if obj is not None else None
        return value if isinstance(value, str) else None

    normalised = normalise(live, volatile) if live is not None else None
    return Arrival(text("type"), text("tag"), text("resource"), normalised, data)


def expectation_of(
    message: RecordedMessage, volatile: VolatilePaths, arrival: Arrival | None
) -> Expectation:
    """The `Expectation` for a recorded message; where it first differs from `arrival`
    when the two have the same type."""
    normalised = normalise(message.payload, volatile) if message.payload is not None else None
    difference = None
    if (
        arrival is not None
        and arrival.normalised is not None
        and normalised is not None
        and arrival.msg_type == message.msg_type
    ):
        difference = first_difference(normalised, arrival.normalised)
    return Expectation(
        seq=message.seq,
        sender=message.sender,
        msg_type=message.msg_type,
        tag=message.tag,
        resource=message.resource,
        normalised=normalised,
        difference=difference,
    )
