"""What each P3 message type is, read from the dialect: the one classification the
fold, the diff, the client and the simulator share.

A client `*_REQUEST` (or the dialect's abort request, whatever it is called) opens
its tag; the server's `*_RESPONSE` (or the dialect's abort response) answers it;
`*_UPDATE` and `*_ACTION` come while it is open. Which response answers which
request, and which updates and actions an execute or an amend gets, is decided
here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum

import attrs

from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.model import MessageType

M = MessageType

EXECUTE = M.EXECUTE_TRANSACTION_REQUEST.value
AMEND = M.AMEND_TRANSACTION_REQUEST.value
SIGNATURE = M.SUBMIT_SIGNATURE_REQUEST.value
SIGNATURE_RESPONSE = M.SUBMIT_SIGNATURE_RESPONSE.value

# The requests that start a transaction, by the operation they start.
OPERATIONS: dict[str, str] = {EXECUTE: "execute", AMEND: "amend"}
TRANSACTION_REQUESTS = frozenset(OPERATIONS)
TRANSACTION_RESPONSES = frozenset(
    {M.EXECUTE_TRANSACTION_RESPONSE.value, M.AMEND_TRANSACTION_RESPONSE.value}
)
UPDATES = frozenset({M.EXECUTE_TRANSACTION_UPDATE.value, M.AMEND_TRANSACTION_UPDATE.value})
ACTIONS = frozenset({M.EXECUTE_TRANSACTION_ACTION.value})
# The server messages that carry a `transaction` object.
CARRY_TRANSACTION = UPDATES | TRANSACTION_RESPONSES | ACTIONS
# What an open request gets before its response, by request type.
PROGRESS: dict[str, frozenset[str]] = {
    EXECUTE: frozenset({M.EXECUTE_TRANSACTION_UPDATE.value, M.EXECUTE_TRANSACTION_ACTION.value}),
    AMEND: frozenset({M.AMEND_TRANSACTION_UPDATE.value}),
}

_REQUEST, _RESPONSE = "_REQUEST", "_RESPONSE"


class Kind(StrEnum):
    """What a message type is on the wire."""

    REQUEST = "request"
    RESPONSE = "response"
    UPDATE = "update"
    ACTION = "action"
    OTHER = "other"


class Step(StrEnum):
    """The timed steps of an operation (the `latencies` projection's `step`, and the
    diff's): from the request to its first update, to an action, to its response;
    and from an action to the POS's answer (`action_waits`)."""

    FIRST_UPDATE = "first_update"
    ACTION = "action"
    RESPONSE = "response"
    ACTION_ANSWER = "action_answer"


@attrs.frozen
class Kinds:
    """The classification of message types under one dialect."""

    dialect: Dialect = DEFAULT_DIALECT

    @property
    def abort(self) -> str:
        return self.dialect.abort.request_type

    @property
    def abort_response(self) -> str:
        return self.dialect.abort.response_type

    def of(self, msg_type: str | None) -> Kind:
        """The kind of `msg_type`: the dialect's abort names first, then the suffix."""
        if msg_type is None:
            return Kind.OTHER
        if msg_type == self.abort:
            return Kind.REQUEST
        if msg_type == self.abort_response:
            return Kind.RESPONSE
        if msg_type.endswith(_REQUEST):
            return Kind.REQUEST
        if msg_type.endswith(_RESPONSE):
            return Kind.RESPONSE
        if msg_type.endswith("_UPDATE"):
            return Kind.UPDATE
        if msg_type.endswith("_ACTION"):
            return Kind.ACTION
        return Kind.OTHER

    def response_to(self, request_type: str) -> str | None:
        """The response type that answers `request_type`, None if it is no request."""
        if request_type == self.abort:
            return self.abort_response
        if request_type.endswith(_REQUEST) and len(request_type) > len(_REQUEST):
            return request_type.removesuffix(_REQUEST) + _RESPONSE
        return None

    def progress_of(self, request_type: str) -> frozenset[str]:
        """The updates and actions a request of `request_type` may get."""
        return PROGRESS.get(request_type, frozenset())

    def answers(self) -> frozenset[str]:
        """The responses whose error the projections read: a transaction's, an
        abort's and a signature's."""
        return TRANSACTION_RESPONSES | {self.abort_response, SIGNATURE_RESPONSE}

    def step(self, msg_type: str | None, *, had_update: bool) -> Step | None:
        """The step a server message makes for the request whose tag it carries."""
        if msg_type in UPDATES:
            return None if had_update else Step.FIRST_UPDATE
        if msg_type in ACTIONS:
            return Step.ACTION
        if self.of(msg_type) is Kind.RESPONSE:
            return Step.RESPONSE
        return None
