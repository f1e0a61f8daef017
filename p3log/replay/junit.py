"""A replay run as a JUnit XML report (`--junit FILE`): replay as a CI gate.

`junit_xml(results)` is a pure function: one `ReplayedConnection` per replayed
connection in, the report's bytes out. Each connection is a `<testsuite>` holding one
`<testcase>` (the recorded session it replayed) and its timings and counts as
`<properties>` (the common JUnit schema allows properties on suites, not on cases).
A case fails (`<failure>`) when its run diverged or did not play the recording to
its end: the message is the one-line summary, the text says for each divergence what
arrived, what was expected and every JSON path at which they differ. A run stopped
by a signal is an `<error>`.

Everything in the report comes from the store's side of the run: the live messages as
the store recorded them (redacted), the recording as it was recorded. Recorded text is
hostile, so every string is made XML-safe: characters XML 1.0 cannot hold (control
characters, lone surrogates, U+FFFE/U+FFFF) are written as `\\xNN`/`\\uNNNN`, and
ElementTree escapes the rest (`<`, `&`, `]]>`, quotes, newlines in attributes).

`write_report(path, data)` replaces `path` atomically (a temporary file in the same
directory, fsynced, renamed over it), so a CI job never reads half a report.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs

from p3log.replay.divergence import Divergence, Expectation
from p3log.replay.normalise import differences

__all__ = [
    "ReplayCase",
    "ReplayedConnection",
    "failure_of",
    "junit_xml",
    "report_problem",
    "write_report",
]

Verdict = Literal["passed", "failed", "error"]

# What XML 1.0 cannot hold at all (a parser rejects it, even as a character reference).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MESSAGE_LIMIT = 1000  # characters of a failure's message attribute


class ReplayedConnection(Protocol):
    """What the report needs of one replayed connection: `replay_of` is the recorded
    session, `session_id` the run's own session in the store (None: never started),
    `failure` the one line saying why it did not pass (None: it passed) and
    `properties` its timings and counts, in order. `ReplayCase` is one; a replay of
    several connections passes one per connection."""

    @property
    def mode(self) -> str: ...
    @property
    def replay_of(self) -> str: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def divergences(self) -> Sequence[Divergence]: ...
    @property
    def failure(self) -> str | None: ...
    @property
    def duration_s(self) -> float | None: ...
    @property
    def properties(self) -> Sequence[tuple[str, str]]: ...


@attrs.frozen
class ReplayCase:
    """One replayed connection (`ServeResult.connection()`, `DriveResult.connection()`)."""

    mode: str  # "serve" or "drive"
    replay_of: str
    session_id: str | None
    outcome: str
    divergences: tuple[Divergence, ...]
    failure: str | None
    duration_s: float | None
    properties: tuple[tuple[str, str], ...] = ()


def failure_of(mode: str, outcome: str, divergences: Sequence[Divergence]) -> str | None:
    """Why a run does not pass, as its exit code says (None: it passed). Serve: played
    to its end (divergences `skip` or `error` went on after count, but do not fail
    it). Drive: reproduced, complete and without a divergence."""
    if outcome == "complete" and (mode == "serve" or not divergences):
        return None
    if outcome == "interrupted":
        return "stopped before the recording was over"
    fatal = [d for d in divergences if d.action == "fail"]
    first = (fatal or list(divergences))[:1]
    if first:
        return f"diverged: {first[0].summary()}"
    return "incomplete: the run ended before the recording did"


def _verdict(result: ReplayedConnection) -> Verdict:
    if result.failure is None:
        return "passed"
    return "error" if result.outcome in ("interrupted", "not_started") else "failed"


def junit_xml(results: Sequence[ReplayedConnection], name: str = "p3log replay") -> bytes:
    """The JUnit XML report of `results` (one per replayed connection)."""
    root = ET.Element("testsuites", name=_safe(name))
    root.set("tests", str(len(results)))
    root.set("failures", str(sum(_verdict(r) == "failed" for r in results)))
    root.set("errors", str(sum(_verdict(r) == "error" for r in results)))
    root.set("time", _seconds(sum(r.duration_s or 0.0 for r in results)))
    for result in results:
        root.append(_suite(result))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _suite(result: ReplayedConnection) -> ET.Element:
    suite = ET.Element("testsuite", name=_safe(f"replay {result.mode} {result.replay_of}"))
    suite.set("tests", "1")
    verdict = _verdict(result)
    suite.set("failures", "1" if verdict == "failed" else "0")
    suite.set("errors", "1" if verdict == "error" else "0")
    suite.set("skipped", "0")
    suite.set("time", _seconds(result.duration_s or 0.0))
    properties = ET.SubElement(suite, "properties")
    for key, value in result.properties:
        ET.SubElement(properties, "property", name=_safe(key), value=_safe(value))
    case = ET.SubElement(suite, "testcase", name=_safe(result.replay_of))
    case.set("classname", _safe(f"p3log.replay.{result.mode}"))
    case.set("time", _seconds(result.duration_s or 0.0))
    if result.failure is not None:
        element = "error" if verdict == "error" else "failure"
        failure = ET.SubElement(case, element, type=result.outcome)
        failure.set("message", _safe(result.failure[:_MESSAGE_LIMIT]))
        failure.text = _safe(_failure_text(result))
    return suite


def _failure_text(result: ReplayedConnection) -> str:
    lines = [result.failure or ""]
    for number, divergence in enumerate(result.divergences, start=1):
        lines += ["", f"divergence {number} ({divergence.rule}, {divergence.action}):"]
        lines.append(f"  {divergence.summary()}")
        arrival = divergence.arrival
        if arrival is not None:
            lines.append(f"  arrived: {arrival.describe()}")
            lines.append(f"    {_json(arrival.to_json().get('message', arrival.to_json()))}")
        for expected in divergence.expected:
            lines.append(f"  expected: {expected.describe()}")
            lines.append(f"    {_json(expected.normalised)}")
            lines += [f"    differs at {path}" for path in _paths(expected, divergence)]
    return "\n".join(lines)


def _paths(expected: Expectation, divergence: Divergence) -> list[str]:
    """Every JSON path at which an expected message of the arrival's type differs."""
    arrival = divergence.arrival
    if expected.difference is None or arrival is None or arrival.normalised is None:
        return []
    found = differences(expected.normalised, arrival.normalised)
    return [f"{d.path}: recorded {_json(d.recorded)}, got {_json(d.got)}" for d in found]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _safe(text: str) -> str:
    """`text` with every character XML 1.0 cannot hold written as an escape."""
    return _NOT_XML.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def report_problem(path: Path) -> str | None:
    """Why a report could not be written to `path` (None: it can), found before the
    replay runs: a gate must not learn only after a whole run that it gets no report."""
    if path.is_dir():
        return f"cannot write the JUnit report {path}: it is a directory"
    try:
        write_report(path.parent / f".{path.name}.probe", b"")  # as the report will be
    except OSError as exc:
        return f"cannot write the JUnit report {path}: {exc.strerror or exc}"
    (path.parent / f".{path.name}.probe").unlink(missing_ok=True)
    return None


def write_report(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (see the module doc)."""
    directory = path.parent if str(path.parent) else Path()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
