"""Which execute an abort or a signature is about: one rule for the fold, the diff
and the client.

Sans-IO: `InFlight` keeps the executes of one session that have no final response
yet, by resource (oldest first) and by tag, as the caller reports requests and
final responses. What it stores is the caller's own object for each execute
(the fold's transaction, the diff's operation), which tells whether its action
waits and whether the server has sent it an update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from p3log.protocol.dialect import AbortRules


class OpenExecute(Protocol):
    """What the rule needs to know of an execute in flight."""

    @property
    def action_waits(self) -> bool: ...

    @property
    def updated(self) -> bool: ...


E = TypeVar("E", bound=OpenExecute)


class InFlight(Generic[E]):
    """The executes in flight in one session (see the module doc)."""

    def __init__(self) -> None:
        # Usually one per resource; more when the POS sent an execute while one was
        # running (execute_while_busy).
        self._by_resource: dict[str | None, list[E]] = {}
        self._by_tag: dict[str | None, E] = {}

    def request(self, tag: str | None, resource: str | None, execute: E | None) -> Sequence[E]:
        """A request with `tag` was sent (`execute`: it starts one). Returns the
        executes that were already running on its resource, oldest first."""
        self._by_tag.pop(tag, None)  # a reused tag names the newest request only
        if execute is None:
            return ()
        running = self._by_resource.setdefault(resource, [])
        before = tuple(running)
        running.append(execute)
        self._by_tag[tag] = execute
        return before

    def finish(self, execute: E) -> None:
        """`execute` got its final response."""
        for running in self._by_resource.values():
            if execute in running:
                running.remove(execute)
        for tag, named in list(self._by_tag.items()):
            if named is execute:
                del self._by_tag[tag]

    def acted_on(self, resource: str | None) -> E | None:
        """The execute an abort or a signature on `resource` is about: the one whose
        action waits, else the latest the server has sent an update for (an execute
        sent while busy that was refused never got one), else the latest."""
        running = self._by_resource.get(resource) or []
        for execute in reversed(running):
            if execute.action_waits:
                return execute
        for execute in reversed(running):
            if execute.updated:
                return execute
        return running[-1] if running else None

    def abort_target(
        self, rules: AbortRules, resource: str | None, quoted_tag: str | None
    ) -> E | None:
        """The execute an abort aborts: per `session_resource`, the one `acted_on` its
        resource; per `body_tag`, the one in flight whose tag its body quotes."""
        if rules.correlation == "session_resource":
            return self.acted_on(resource)
        return self._by_tag.get(quoted_tag)


def quoted_tag(rules: AbortRules, execute_tag: str) -> str | None:
    """The tag an abort's body quotes to name the execute it aborts: the execute's
    under `body_tag`; none under `session_resource`, where the resource says it."""
    return execute_tag if rules.correlation == "body_tag" else None
