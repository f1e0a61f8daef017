"""The two sides of a benchmark: "old" (a commit, checked out outside the repo) and
"new" (this working tree), each run as a subprocess of the same interpreter.

The dependencies are the same on both sides, so both use this venv's python; what
differs is the p3log on `PYTHONPATH`. The old checkout is `git archive` of the
commit, unpacked once under the temporary directory and reused by later runs
(`p3log-baseline-<sha>/`): it touches neither this repository's worktrees nor its
index. Every command runs with its side's root as the working directory, because
`python -m` puts the working directory first on sys.path.

    python bench/baseline.py [COMMIT]   # prints where the checkout is
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from p3log.store.keys import KEY_DIR_ENV

REPO = Path(__file__).resolve().parent.parent
# The commit issue 13 measured "today's" figures on.
BASELINE = "44395e8"
KEYS = Path(tempfile.gettempdir()) / "p3log-bench-keys"


@dataclass(frozen=True)
class Side:
    """One p3log to measure: its name in the tables, where its source is, and which
    commit (or "working tree") that is."""

    name: str
    root: Path
    describe: str

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(self.root),
            "COLUMNS": "300",
            # the fingerprint keys of the benchmark's throwaway stores stay out of $HOME
            KEY_DIR_ENV: str(KEYS),
        }

    def p3log(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "p3log", *args]

    def script(self, name: str, *args: str) -> list[str]:
        """One of this side's own bench scripts (e.g. its store generator)."""
        return [sys.executable, str(self.root / "bench" / name), *args]

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(argv, env=self.env(), cwd=self.root, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env(), cwd=self.root, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def resolve(commit: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()


def checkout(commit: str = BASELINE) -> Path:
    """The source tree of `commit`, unpacked outside the repo (made once, then reused)."""
    sha = resolve(commit)
    final = Path(tempfile.gettempdir()) / f"p3log-baseline-{sha}"
    if (final / "p3log" / "__init__.py").exists():
        return final
    partial = Path(tempfile.mkdtemp(prefix=f"p3log-baseline-{sha[:12]}-"))
    try:
        with subprocess.Popen(
            ["git", "-C", str(REPO), "archive", "--format=tar", sha], stdout=subprocess.PIPE
        ) as archive:
            assert archive.stdout is not None
            with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
                tar.extractall(partial, filter="data")
        if archive.returncode != 0:
            raise SystemExit(f"git archive {sha} failed")
        partial.replace(final)  # another run may have made it meanwhile: then use that one
    except OSError:
        if not (final / "p3log" / "__init__.py").exists():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def sides(commit: str = BASELINE) -> tuple[Side, Side]:
    """(old, new), each checked to import its own p3log."""
    old = Side("old", checkout(commit), resolve(commit)[:7])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()
    head = resolve("HEAD")[:7]
    new = Side("new", REPO, f"working tree ({head}{' + changes' if dirty else ''})")
    for side in (old, new):
        found = side.run(
            [sys.executable, "-c", "import p3log; print(p3log.__file__)"],
            check=True,
            stdout=subprocess.PIPE,
        ).stdout.strip()
        if not Path(found).is_relative_to(side.root):
            raise SystemExit(f"{side.name}: p3log imports from {found}, not from {side.root}")
    return old, new


if __name__ == "__main__":
    for side in sides(*sys.argv[1:2]):
        print(f"{side.name}: {side.describe} in {side.root}")
