"""The client's protocol decisions, sans-IO: which open request a server message
belongs to, and which rule a message that fits none breaks.

`Router` keeps the open tags (each with the response and the updates/actions its
request may get, from `p3log.protocol.kinds`) and the latest answered ones. `route`
takes what the parser made of one message and returns one plan: `Deliver` it to
its request, or `Stray` (a `Violation`, and maybe the request it fails). The trio
reader in `client.py` only carries the plans out, like replay's plans and pump.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.kinds import Kind, Kinds
from p3log.protocol.model import Message
from p3log.protocol.parse import Malformed
from p3log.protocol.rules import Rule

__all__ = ["ANSWERED_KEPT", "Deliver", "OpenRequest", "Plan", "Router", "Stray", "Violation"]

# How many answered tags are remembered: a message for one is after the response.
ANSWERED_KEPT = 4096


@attrs.frozen
class Violation:
    """Something the server sent that fits no open request (docs/protocol.md §7).

    `rule` is `malformed_message`, `no_tag`, `unknown_tag`, `message_after_response`
    or `unexpected_type` (the names of `p3log.protocol.rules`, which the projections'
    findings use too); `data` is the bytes as they arrived.
    """

    rule: Rule
    detail: str
    tag: str | None
    msg_type: str | None
    data: bytes = attrs.field(repr=False)


@attrs.frozen
class OpenRequest:
    """A request in flight: what its tag may still bring."""

    tag: str
    response_type: str
    progress_types: frozenset[str]


@attrs.frozen
class Deliver:
    """Hand `message` to the request of `tag`; `final`: it is the response."""

    tag: str
    message: Message
    final: bool


@attrs.frozen
class Stray:
    """A message no open request expects. If it answers a request after all (`ends`),
    that request fails: with `error`'s status when it is an error response,
    else with a protocol violation saying `failure`."""

    violation: Violation
    ends: str | None = None
    error: Message | None = None
    failure: str = ""


Plan = Deliver | Stray


class Router:
    """The open and the recently answered tags of one client (see the module doc)."""

    def __init__(
        self, dialect: Dialect = DEFAULT_DIALECT, answered_kept: int = ANSWERED_KEPT
    ) -> None:
        self.kinds = Kinds(dialect)
        self._open: dict[str, OpenRequest] = {}
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._answered_kept = answered_kept

    def open(self, tag: str, request_type: str) -> OpenRequest:
        """A request of `request_type` goes out with `tag`."""
        response = self.kinds.response_to(request_type)
        if response is None:
            raise ValueError(f"{request_type} is not a request")
        request = OpenRequest(tag, response, self.kinds.progress_of(request_type))
        self._open[tag] = request
        return request

    def forget(self, tag: str) -> None:
        """The request never went out: its tag is neither open nor answered."""
        self._open.pop(tag, None)

    def answered(self, tag: str) -> None:
        """No more messages may come for `tag`."""
        self._open.pop(tag, None)
        self._answered[tag] = None
        if len(self._answered) > self._answered_kept:
            self._answered.popitem(last=False)

    def close(self) -> list[str]:
        """The link ended: the tags that were still open."""
        tags = list(self._open)
        self._open.clear()
        return tags

    def is_open(self, tag: str) -> bool:
        return tag in self._open

    def route(self, parsed: Message | Malformed, data: bytes) -> Plan:
        """The plan for one message from the server (`data` as it arrived)."""
        if isinstance(parsed, Malformed):
            return self._malformed(parsed, data)
        msg_type, tag = parsed.type, parsed.tag
        if tag is None:
            return Stray(
                Violation(Rule.NO_TAG, f"a {msg_type} without a tag", None, msg_type, data)
            )
        request = self._open.get(tag)
        if request is None:
            if tag in self._answered:
                rule, detail = Rule.MESSAGE_AFTER_RESPONSE, f"a {msg_type} after the response"
            else:
                rule, detail = Rule.UNKNOWN_TAG, f"a {msg_type} for a tag no request has"
            return Stray(Violation(rule, detail, tag, msg_type, data))
        final = msg_type == request.response_type
        if final or msg_type in request.progress_types:
            if final:
                self.answered(tag)
            return Deliver(tag, parsed, final)
        detail = f"a {msg_type} for a request that expects {request.response_type}"
        violation = Violation(Rule.UNEXPECTED_TYPE, detail, tag, msg_type, data)
        if self.kinds.of(msg_type) is not Kind.RESPONSE:
            return Stray(violation)
        # It answers the request after all: an error status says why (e.g. the
        # simulator's ERROR_RESPONSE), anything else is a protocol violation.
        self.answered(tag)
        error = parsed if parsed.is_error else None
        return Stray(violation, ends=tag, error=error, failure=f"{detail} (tag {tag})")

    def _malformed(self, malformed: Malformed, data: bytes) -> Stray:
        obj = malformed.obj or {}
        tag = obj.get("tag") if isinstance(obj.get("tag"), str) else None
        msg_type = obj.get("type") if isinstance(obj.get("type"), str) else None
        violation = Violation(Rule.MALFORMED_MESSAGE, str(malformed), tag, msg_type, data)
        request = self._open.get(tag) if tag is not None else None
        if request is None or msg_type != request.response_type:
            return Stray(violation)
        assert tag is not None
        self.answered(tag)
        failure = f"the {msg_type} for tag {tag} is malformed: {malformed}"
        return Stray(violation, ends=tag, failure=failure)
