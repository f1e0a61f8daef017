"""Recorded values that a replay swaps for live ones: the POS's tags, fresh ids.

A replayed server message must carry the tag the *live* POS chose for the operation
(it makes its own), and, with `--fresh-ids`, new transaction identifiers instead of
the recorded ones. `Renames` keeps both maps (recorded -> live) and applies them:

- `outgoing(obj)`: a recorded server message as it is to be sent: the envelope's
  `tag` mapped, and every recorded identifier replaced wherever it occurs in a
  string (receipts print it inside lines of text), with a fresh one minted the first
  time an identifier is seen at `**.transaction.identifier`;
- `incoming(obj)`: a live POS message in the recording's terms, for matching: fresh
  identifiers back to the recorded ones (an amend's
  `referencedTransactionIdentifier`), and a tag the POS quotes in a body (the
  abort's execute tag under `body_tag` correlation) back to the recorded tag.

Both return the very object they were given when nothing changed, so the caller can
send recorded bytes untouched.

Drive mode plays the other side and uses the same maps the other way round: the
tags are fresh ones the replayer makes for the recorded POS requests (`learn_tag`),
the identifiers are the ones the live server issued (`learn_ids`, from a live
server message and the recorded one it stands for). `outgoing` then writes a
recorded POS message in live terms (its tag, an abort's quoted execute tag, the
identifiers an amend refers to), and `incoming` reads a live server message in the
recording's terms (`recorded_tag` says which recorded operation a live tag is).
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.model import body_key
from p3log.replay.normalise import JsonPath, PathStep

__all__ = ["IDENTIFIER_PATH", "Renames", "fresh_identifier"]

#: Where the server issues an identifier: the transaction object, wherever it is.
IDENTIFIER_PATH = JsonPath.parse("**.transaction.identifier")


def fresh_identifier(recorded: str) -> str:
    """A new identifier shaped like `recorded`: as many hex digits, or a uuid4 hex."""
    if recorded and all(char in string.hexdigits for char in recorded):
        fresh = secrets.token_hex((len(recorded) + 1) // 2)[: len(recorded)]
        return fresh.upper() if recorded.isupper() else fresh
    return uuid.uuid4().hex


class Renames:
    """The tag map and the identifier map of one replay run (see the module doc)."""

    def __init__(
        self,
        *,
        fresh_ids: bool = False,
        new_id: Callable[[str], str] = fresh_identifier,
        dialect: Dialect = DEFAULT_DIALECT,
    ) -> None:
        self.fresh_ids = fresh_ids
        self.tags: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self._new_id = new_id
        self._tag_ref = (body_key(dialect.abort.request_type), dialect.abort.tag_key)
        self._live_tags: dict[str, str] = {}
        self._forward: _Replacer | None = None
        self._backward: _Replacer | None = None

    def learn_tag(self, recorded: str, live: str) -> None:
        """The live POS used `live` where the recording has `recorded`."""
        self.tags[recorded] = live
        self._live_tags[live] = recorded

    def recorded_tag(self, live: str) -> str | None:
        """The recorded tag the live tag `live` stands for, if it was learned."""
        return self._live_tags.get(live)

    def new_ids(self, recorded: dict[str, Any], live: dict[str, Any]) -> dict[str, str]:
        """The identifier pairs (recorded -> live) that a recorded message and the live
        one standing for it show, in order of appearance, and that are not known yet."""
        found: dict[str, str] = {}
        pairs = zip(
            _values_at(recorded, IDENTIFIER_PATH), _values_at(live, IDENTIFIER_PATH), strict=False
        )
        for old, new in pairs:
            if not (isinstance(old, str) and isinstance(new, str) and old and new):
                continue
            if old != new and old not in self.ids and old not in found:
                found[old] = new
        return found

    def learn_ids(self, recorded: dict[str, Any], live: dict[str, Any]) -> None:
        """Keep the pairs `new_ids` finds (drive mode: the live server issued them). An
        identifier learned once keeps its live counterpart."""
        found = self.new_ids(recorded, live)
        if found:
            self.ids.update(found)
            self._forward = self._backward = None

    def outgoing(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A recorded message as the live peer must see it (serve: a server message;
        drive: a POS message)."""
        if self.fresh_ids:
            for found in _values_at(obj, IDENTIFIER_PATH):
                if isinstance(found, str) and found and found not in self.ids:
                    self.ids[found] = self._new_id(found)
                    self._forward = self._backward = None
        if self.ids:
            if self._forward is None:
                self._forward = _Replacer(self.ids)
            obj = self._forward.apply(obj)
        tag = obj.get("tag")
        if isinstance(tag, str) and tag in self.tags:
            obj = {**obj, "tag": self.tags[tag]}
        body_name, key = self._tag_ref  # a tag quoted in a body (drive mode's aborts)
        body = obj.get(body_name)
        if isinstance(body, dict) and isinstance(quoted := body.get(key), str):
            live = self.tags.get(quoted)
            if live is not None:
                obj = {**obj, body_name: {**body, key: live}}
        return obj

    def incoming(
        self, obj: dict[str, Any], *, assuming: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """A live message in the recording's terms (serve: the POS's; drive: the
        server's); `assuming` are identifier pairs (recorded -> live) to read back as
        well, without learning them."""
        if assuming:
            mapping = {**self.ids, **assuming}
            obj = _Replacer({live: rec for rec, live in mapping.items()}).apply(obj)
        elif self.ids:
            if self._backward is None:
                self._backward = _Replacer({live: rec for rec, live in self.ids.items()})
            obj = self._backward.apply(obj)
        body_name, key = self._tag_ref
        body = obj.get(body_name)
        if isinstance(body, dict) and isinstance(quoted := body.get(key), str):
            recorded = self._live_tags.get(quoted)
            if recorded is not None:
                obj = {**obj, body_name: {**body, key: recorded}}
        return obj


class _Replacer:
    """Replaces every occurrence of the map's keys inside the strings of a JSON value."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self._mapping = dict(mapping)
        # Longest first, so an id that contains another is replaced whole.
        keys = sorted(mapping, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(key) for key in keys))

    def apply(self, value: Any) -> Any:
        if isinstance(value, str):
            if self._pattern.search(value) is None:
                return value
            return self._pattern.sub(lambda m: self._mapping[m.group()], value)
        if isinstance(value, dict):
            changed = {key: self.apply(item) for key, item in value.items()}
            same = all(changed[key] is item for key, item in value.items())
            return value if same else changed
        if isinstance(value, list):
            items = [self.apply(item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value


def _values_at(value: Any, pattern: JsonPath) -> list[Any]:
    """Every value in `value` whose path `pattern` names, in document order (a node
    before what it holds). Asked twice for every message a drive compares: only
    containers are descended into, and a path is matched only where its last step
    is the one the pattern names."""
    found: list[Any] = []
    last = pattern.segments[-1]
    named = last not in ("*", "**")

    def walk(steps: Iterable[tuple[PathStep, Any]], path: tuple[PathStep, ...]) -> None:
        for step, item in steps:
            here = (*path, step)
            if (not named or str(step) == last) and pattern.matches(here):
                found.append(item)
            if isinstance(item, dict):
                walk(item.items(), here)
            elif isinstance(item, list):
                walk(enumerate(item), here)

    if isinstance(value, dict):
        walk(value.items(), ())
    elif isinstance(value, list):
        walk(enumerate(value), ())
    return found
