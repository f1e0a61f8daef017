"""Inputs the issue-13 benchmarks share: a JSONL file of N ~1 KB events for `p3log import`.

The file holds records without the export's header and end line (which `p3log import`
accepts, checking each line): POS requests and PayServer replies of bench/messages.py,
sessions of 1,000 events, timestamps 1 ms apart. seq and hashes are left out: an
import recomputes them.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from messages import message

SESSION_EVENTS = 1_000
_EPOCH_US = 1_764_280_000_000_000


def write_import_file(path: Path, events: int) -> Path:
    """Write (or reuse, if it is already whole) the file of `events` events at `path`."""
    done = path.with_name(path.name + ".done")
    if path.exists() and done.exists() and done.read_text() == str(events):
        return path
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        lines = []
        for n in range(events):
            lines.append(
                orjson.dumps(
                    {
                        "session_id": f"bench-{n // SESSION_EVENTS:06d}",
                        "sender": "client" if n % 2 == 0 else "server",
                        "kind": "message",
                        "recorded_at_us": _EPOCH_US + n * 1_000,
                        "mono_ns": n * 1_000_000,
                        "payload": message(n // 2).decode(),
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
            )
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    partial.replace(path)
    done.write_text(str(events))
    return path
