"""What a session shares with the operations it runs.

An operation (execute or amend) runs as a task in its session's nursery, so the
session keeps reading while updates flow. The two meet here:

- `Link` is what an operation needs from its session: send a message, end the
  operation's bookkeeping (before its final response, so that a POS that starts the
  next request at once finds the device free), drop the connection;
- `ExecuteRun` is the state of an execute in flight that the session's abort and
  signature handlers read and change. They change it synchronously, send their
  response, then `wake` the execute.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio

from p3log.protocol.model import Message
from p3log.sim.checks import SignatureAnswer

__all__ = ["ExecuteRun", "Link"]


class Link(Protocol):
    async def send(self, message: Message) -> None:
        """Send on the session's channel; a closed channel ends the session."""
        ...

    async def drop(self) -> None:
        """Close the connection without a goodbye (a simulated fault); ends the session."""
        ...

    def forget(self, tag: str) -> None:
        """The operation with this tag is over: its resource and tag are free again."""
        ...


@attrs.define(eq=False)
class ExecuteRun:
    """An execute in flight, as its session sees it."""

    tag: str
    resource: str
    abortable: bool = False  # what the latest update said
    action_open: bool = False  # an action waits for the POS's answer
    abort_requested: bool = False
    answer: SignatureAnswer | None = None
    wake: trio.Event = attrs.Factory(trio.Event)

    @property
    def can_abort(self) -> bool:
        """docs/protocol.md: abortable while the latest update said so or an action waits."""
        return not self.abort_requested and (self.abortable or self.action_open)

    def request_abort(self) -> None:
        self.abort_requested = True
        self.action_open = False

    def answer_action(self, answer: SignatureAnswer) -> None:
        self.answer = answer
        self.action_open = False
