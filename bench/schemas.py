"""Declared Parquet schemas (issue 15): sealing segments and the Parquet export, old and new.

The old code wrote both with DuckDB's `COPY`; the new one reads the rows from DuckDB as
Arrow and writes them with pyarrow and the declared schema. Both run here side by side
on the same store, alternately, each in a subprocess with its own source tree:

    .venv/bin/python bench/schemas.py --old /tmp/lake-schema-old [--events 200000]

(`git worktree add --detach /tmp/lake-schema-old verify` makes the old tree.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sessions"
NEW = Path(__file__).parents[1]

_SEAL = """
import sys, time
from pathlib import Path
from p3log.store.index import connect
from p3log.store.segments import EventSegments, SEAL_EVENTS
root = Path(sys.argv[1])
con = connect(root / "index.duckdb", read_only=True)
segments = EventSegments(root)
start = time.perf_counter()
count = int(sys.argv[2]) // SEAL_EVENTS
for n in range(count):
    segments._seal(con, n * SEAL_EVENTS + 1, (n + 1) * SEAL_EVENTS)
print(time.perf_counter() - start, count * SEAL_EVENTS)
"""
_EXPORT = """
import sys, time
from pathlib import Path
from p3log.projections.export import export_parquet
start = time.perf_counter()
export_parquet(Path(sys.argv[1]), Path(sys.argv[2]))
print(time.perf_counter() - start)
"""


def _events(path: Path, count: int) -> None:
    lines = [
        json.loads(line)
        for fixture in sorted(FIXTURES.glob("*.jsonl"))
        for line in fixture.read_text().splitlines()
    ]
    with path.open("w") as out:
        for n in range(count):
            record = dict(lines[n % len(lines)])
            copy = n // len(lines)
            record["session_id"] = f"{record['session_id']}-{copy}"
            if record.get("tag") and record.get("payload"):  # payloads differ, as a shop's do
                record["payload"] = record["payload"].replace(
                    record["tag"], f"{record['tag']}-{copy}"
                )
                record["tag"] = f"{record['tag']}-{copy}"
            out.write(json.dumps(record) + "\n")


def _run(tree: Path, script: str, *args: str) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # `python -c` puts the working directory first on the path
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(value) for value in done.stdout.split()]


def _size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p3log-bench-schemas-") as work:
        root = Path(work) / "store"
        _events(Path(work) / "in.jsonl", args.events)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "p3log",
                "import",
                "--store",
                str(root),
                str(Path(work) / "in.jsonl"),
            ],
            check=True,
            capture_output=True,
        )
        _run(
            NEW,
            "from p3log.projections.opening import open_store; import sys; "
            "open_store(sys.argv[1]).close()",
            str(root),
        )  # project once
        print(f"{args.events} events; load average {os.getloadavg()}")
        for _ in range(args.rounds):
            for name, tree in (("old", args.old), ("new", NEW)):
                seconds, sealed = _run(tree, _SEAL, str(root), str(args.events))
                size = _size(root / "segments")
                shutil.rmtree(root / "segments")
                out = Path(work) / f"out-{name}"
                (export_s,) = _run(tree, _EXPORT, str(root), str(out))
                print(
                    f"{name}: seal {sealed / seconds:,.0f} events/s ({size / 1e6:.1f} MB), "
                    f"export {export_s:.1f} s ({_size(out) / 1e6:.1f} MB); "
                    f"load {os.getloadavg()[0]:.2f}"
                )
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
