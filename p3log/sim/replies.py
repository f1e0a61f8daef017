"""The messages the simulator answers with, built from the protocol model.

Every answer to a request echoes the request's `tag` and `resource` exactly as they
arrived (a string, an explicit `null`, or absent), and writes `"tag": null` when
there is no tag to echo. A refused request gets its `*_RESPONSE` with status
`ERROR` and an `error` object (`Problem`); bytes that are not a request at all get
`ERROR_RESPONSE` (see docs/sim.md).
"""

from __future__ import annotations

from typing import Any

import attrs

from p3log.protocol.dialect import Dialect
from p3log.protocol.kinds import Kinds
from p3log.protocol.model import Body, Message, P3Error

__all__ = ["GENERIC_ERROR_TYPE", "Problem", "error_reply", "ok_reply", "response_type"]

OK = "OK"
ERROR = "ERROR"
# The answer to bytes that name no request type (not JSON, no type, not a request).
GENERIC_ERROR_TYPE = "ERROR_RESPONSE"


@attrs.frozen
class Problem:
    """Why a request is refused: the `error` object's type, source and message."""

    type: str
    source: str
    message: str

    @classmethod
    def missing(cls, name: str) -> Problem:
        return cls("PARAMETER_MISSING", "PARAMETER", f"{name} is missing")

    @classmethod
    def invalid(cls, message: str) -> Problem:
        return cls("PARAMETER_INVALID", "PARAMETER", message)

    def to_wire(self) -> P3Error:
        return P3Error(type=self.type, source=self.source, message=self.message)


def response_type(msg_type: str, dialect: Dialect) -> str:
    """The response that answers `msg_type`; `ERROR_RESPONSE` when it is no request."""
    return Kinds(dialect).response_to(msg_type) or GENERIC_ERROR_TYPE


@attrs.frozen
class Echo:
    """The envelope keys an answer repeats from what it answers."""

    tag: str | None
    resource: str | None = None
    resource_null: bool = False

    @classmethod
    def of(cls, request: Message) -> Echo:
        return cls(request.tag, request.resource, "resource" in request.null_keys)

    @classmethod
    def of_object(cls, obj: dict[str, Any] | None) -> Echo:
        """From a decoded object that is not a valid message (strings only)."""
        obj = obj or {}
        tag, resource = obj.get("tag"), obj.get("resource")
        return cls(
            tag if isinstance(tag, str) else None,
            resource if isinstance(resource, str) else None,
            "resource" in obj and resource is None,
        )


def _message(
    msg_type: str, echo: Echo, status: str, error: P3Error | None, body: Body | None
) -> Message:
    nulls = set()
    if echo.tag is None:
        nulls.add("tag")
    if echo.resource is None and echo.resource_null:
        nulls.add("resource")
    return Message(
        type=msg_type,
        tag=echo.tag,
        resource=echo.resource,
        status=status,
        error=error,
        body=body,
        null_keys=frozenset(nulls),
    )


def ok_reply(msg_type: str, echo: Echo, body: Body | None = None) -> Message:
    return _message(msg_type, echo, OK, None, body)


def error_reply(msg_type: str, echo: Echo, problem: Problem, body: Body | None = None) -> Message:
    return _message(msg_type, echo, ERROR, problem.to_wire(), body)
