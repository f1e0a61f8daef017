"""`p3log import` benchmark: events/s for a file of ~1 KB events, in a process of its own.

`measure(python_path, events)` imports one file (made once per size by `make_export`)
into a new store with the p3log found on `python_path`, in a subprocess, and returns
its figures, so that the old code (a checkout of another commit) and the new one are
measured side by side in one run:

    python bench/imports.py [--events N] [--old /tmp/bulk-old]   (a git worktree of the old commit)

The file is what a tap records: sessions of 100 events (connection_opened, a login
whose merchant secret the door fingerprints and then replaces wherever it reappears
in the session, 97 EXECUTE_TRANSACTION_UPDATE messages of bench/messages.py,
connection_closed), in the journal's record format without seq and hashes, which
an import recomputes anyway.

Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from messages import message

SESSION_EVENTS = 100
_SECRET = "s3cr3t-merchant-passphrase"

# Run by the measured interpreter: import, then print its own CPU times as JSON.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from p3log.store.transfer import import_jsonl
started = time.perf_counter()
count = import_jsonl(Path(sys.argv[1]), Path(sys.argv[2]))
wall = time.perf_counter() - started
own = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"events": count, "wall_s": wall, "writer_cpu_s": own.ru_utime + own.ru_stime}))
"""


def _record(session: str, sender: str, kind: str, n: int, payload: str) -> bytes:
    return orjson.dumps(
        {
            "session_id": session,
            "sender": sender,
            "kind": kind,
            "recorded_at_us": 1_764_280_000_000_000 + n * 1000,
            "mono_ns": 5_000_000_000 + n * 1_000_000,
            "payload": payload,
            "raw_b64": None,
            "redaction_policy": "p3log-redact/2",
            "redactions": [],
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def _session_lines(first: int) -> list[bytes]:
    session = f"{first // SESSION_EVENTS:016x}"
    opened = json.dumps({"transport": "ws", "peer": "127.0.0.1:40000", "path": "/"})
    login = json.dumps(
        {
            "type": "LOGIN_MERCHANT_REQUEST",
            "tag": f"login-{first}",
            "merchantIdentifier": "m-1",
            "merchantSecret": _SECRET,
        },
        separators=(",", ":"),
    )
    lines = [
        _record(session, "tap", "connection_opened", first, opened),
        _record(session, "client", "message", first + 1, login),
    ]
    for n in range(first + 2, first + SESSION_EVENTS - 1):
        text = message(n).decode()
        if n % 20 == 0:  # the secret again, later in the session
            text = text.replace("Coffee and a croissant", _SECRET)
        lines.append(_record(session, "server", "message", n, text))
    lines.append(_record(session, "tap", "connection_closed", first + SESSION_EVENTS - 1, "{}"))
    return lines


def make_export(path: Path, events: int) -> Path:
    """A file of `events` records (a multiple of SESSION_EVENTS), made once."""
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("wb") as out:
            for first in range(0, events, SESSION_EVENTS):
                out.write(b"".join(_session_lines(first)))
        partial.replace(path)
    return path


def measure(python_path: str, events: int, work: Path | None = None) -> dict[str, float]:
    """Import `events` ~1 KB events with the p3log on `python_path`, in a subprocess."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        source = make_export(Path(tempfile.gettempdir()) / f"p3log-import-{events}.jsonl", events)
        env = {**os.environ, "PYTHONPATH": python_path}
        before = os.getloadavg()[0]
        cpu_before = _children_cpu()
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(Path(tmp) / "store"), str(source)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
        cpu = _children_cpu() - cpu_before  # the import and any worker it started
        figures["cpu_s"] = cpu
        figures["events_per_s"] = figures["events"] / figures["wall_s"]
        figures["cpu_us_per_event"] = cpu / figures["events"] * 1e6
        # The writer's own share (the rest is its workers'): what bounds the rate when
        # the workers have cores of their own.
        figures["writer_cpu_us_per_event"] = figures["writer_cpu_s"] / figures["events"] * 1e6
        figures["load_before"] = before
        figures["load_after"] = os.getloadavg()[0]
        return figures


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


NEW = str(Path(__file__).resolve().parent.parent)


def print_comparison(events: int, old: str | None) -> None:
    """Old and new imports, interleaved twice, each with the load average around it."""
    print(f"p3log import, {events:,} events of ~1 KB; load average {os.getloadavg()}")
    runs = [("new", NEW)] if old is None else [("old", old), ("new", NEW)]
    print(
        f"{'':<6}{'events/s':>10}{'seconds':>9}{'CPU µs/event':>14}{'of it writer':>14}"
        f"{'load before/after':>20}"
    )
    for name, path in runs * 2:
        f = measure(path, events)
        print(
            f"{name:<6}{f['events_per_s']:>10,.0f}{f['wall_s']:>9.1f}"
            f"{f['cpu_us_per_event']:>14.1f}{f['writer_cpu_us_per_event']:>14.1f}"
            f"{f['load_before']:>13.2f} / {f['load_after']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--old", default=None, help="a checkout of the old code (its root)")
    args = parser.parse_args()
    print_comparison(args.events, args.old)


if __name__ == "__main__":
    main()
