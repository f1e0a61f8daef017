"""Strip the notebooks' outputs: they are committed without (`make notebooks-strip`).

    python notebooks/strip.py [--check] [NOTEBOOK ...]

Clears every code cell's outputs and execution count, drops the metadata that
running a notebook leaves behind (cell timings, collapsed/scrolled flags, the
kernel's Python version), and writes the file back as nbformat writes it. With no
NOTEBOOK, all of notebooks/*.ipynb. `--check` writes nothing and exits 1 when a
notebook would change (tests/test_notebooks.py runs the same check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nbformat

HERE = Path(__file__).resolve().parent
# What executing or viewing a notebook adds to a cell's metadata.
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(notebook: Any) -> Any:
    """`notebook` (a `NotebookNode`) without outputs, execution counts or run metadata;
    changed in place and returned."""
    for cell in notebook.cells:
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    language = notebook.metadata.get("language_info")
    if language is not None:
        notebook.metadata["language_info"] = {"name": language.get("name", "python")}
    notebook.metadata.pop("widgets", None)
    return notebook


def stripped_text(path: Path) -> str:
    """The file at `path` as it is once stripped."""
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    text = nbformat.writes(strip(notebook))
    return text if text.endswith("\n") else text + "\n"  # as nbformat.write ends a file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    unstripped = []
    for path in paths:
        text = stripped_text(path)
        if text != path.read_text(encoding="utf-8"):
            unstripped.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    for path in unstripped:
        print(f"{'has outputs' if args.check else 'stripped'}: {path}")
    return 1 if args.check and unstripped else 0


if __name__ == "__main__":
    sys.exit(main())
