"""The analyst notebooks (notebooks/*.ipynb) run from a clean clone, and are committed
without outputs.

Each notebook is executed with nbclient on an IPython kernel of this interpreter
(the venv's), in a scratch working directory, on the data it builds itself (a store
made from fixtures/sessions/). A cell that raises fails the test with the cell and
its traceback; so does an error that shows up only as an output (a figure that
cannot be drawn is reported after its cell has finished).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from notebooks.strip import stripped_text

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
KERNEL = "p3log-test-python"
CELL_TIMEOUT_S = 120
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    """IPython's coloured traceback without the colours."""
    return _ANSI.sub("", text)


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this interpreter, found before any the user has installed, and
    an environment in which the notebooks use their own data; the working directory."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "p3log tests", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no user profile or startup
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet the debugger's warning
    for name in ("P3LOG_STORE", "P3LOG_TRANSACTION", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


def test_the_notebooks_are_there() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert {"01_transactions_overview.ipynb", "02_incident_replay.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path, kernel_env: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(kernel_env)}},
    )
    started = time.monotonic()
    raised: str | None = None
    try:
        client.execute()
    except CellExecutionError as exc:
        raised = str(exc)
    took = time.monotonic() - started
    if raised is not None:
        pytest.fail(f"{path.name}: a cell raised\n{plain(raised)}", pytrace=False)

    errors = [
        (index, output)
        for index, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    if errors:
        index, output = errors[0]
        trace = plain("\n".join(output.get("traceback", [])))
        pytest.fail(
            f"{path.name}, cell {index}: {output.ename}: {output.evalue}\n{trace}", pytrace=False
        )
    figures = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert figures >= 2, f"{path.name} drew {figures} inline figure(s)"
    assert took < CELL_TIMEOUT_S, f"{path.name} took {took:.0f} s"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs: run `make notebooks-strip`"
            assert cell.execution_count is None, f"cell {index} has an execution count"
    assert stripped_text(path) == path.read_text(encoding="utf-8"), (
        f"{path.name} is not stripped: run `make notebooks-strip`"
    )
