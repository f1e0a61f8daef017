"""The layers of p3log, enforced from the import graph.

A module may import its own layer and the layers below it, never one above: the
sans-IO protocol at the bottom, the CLI at the top. Every import counts, including
the ones inside functions (a lazy import is still a dependency). The table is written
once, here, and `docs/architecture.md` must show the same one.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "p3log"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

#: (layer, the top-level names of p3log in it), bottom first.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("protocol", ("protocol", "settings", "visible", "wording")),
    ("store", ("store",)),
    ("projections", ("projections",)),
    ("services", ("net", "client", "pos", "sim", "tap", "replay", "report")),
    ("cli", ("cli", "demo", "loop", "render", "__main__", "__init__")),
)
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}

#: What a POS developer imports must not load the analytics engine.
LIGHT = ("p3log.protocol", "p3log.client", "p3log.sim")
HEAVY = ("duckdb", "pyarrow", "pandas", "polars")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(module: str) -> str:
    """The top-level name under p3log a module belongs to (`__init__` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str) -> set[str]:
    """Every p3log module `path` imports, at any depth (functions included)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # `from p3log import cli` imports the module p3log.cli
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "p3log" or name.startswith("p3log.")}


def _existing(name: str) -> bool:
    relative = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / relative).with_suffix(".py").is_file() or (root / relative).is_dir()


def _modules() -> list[tuple[Path, str]]:
    return [(path, _module_name(path)) for path in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_has_a_layer() -> None:
    unplaced = {_top(module) for _, module in _modules()} - RANK.keys()
    assert not unplaced, f"add {sorted(unplaced)} to LAYERS (and docs/architecture.md)"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward: set[str] = set()
    for path, module in _modules():
        own = RANK[_top(module)]
        for target in _imports(path, module):
            if not _existing(target):  # `from p3log.x import name`: the module is p3log.x
                target = target.rpartition(".")[0]
            if RANK[_top(target)] > own:
                upward.add(f"{module} ({LAYERS[own][0]}) imports {target}")
    assert not upward, "\n".join(sorted(upward))


def test_the_graph_sees_imports_inside_functions() -> None:
    # the root's lazy `open_store` is an import of projections, found in a function
    root = PACKAGE / "__init__.py"
    assert "p3log.projections.opening" in _imports(root, "p3log")


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_load_no_analytics_engine(module: str) -> None:
    probe = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], check=True, capture_output=True, text=True
        ).stdout
    )
    heavy = sorted({name.split(".")[0] for name in loaded} & set(HEAVY))
    assert not heavy, f"import {module} loads {heavy}"
    assert not [name for name in loaded if name.startswith("p3log.projections")]


def test_open_store_is_still_the_package_s() -> None:
    probe = (
        "import p3log; from p3log import open_store; "
        "from p3log.projections.opening import open_store as real; "
        "assert p3log.open_store is open_store is real; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
    with pytest.raises(AttributeError):
        import p3log

        _ = p3log.no_such_thing  # type: ignore[attr-defined]


def test_architecture_doc_shows_the_same_layers() -> None:
    text = ARCHITECTURE.read_text()
    rows = re.findall(r"^\| (\d) \| `?(\w+)`? \| ([^|]+) \|", text, flags=re.MULTILINE)
    documented = tuple(
        (name, tuple(re.findall(r"`([\w.]+?)(?:\.py|/)?`", modules)))
        for _, name, modules in sorted(rows)
    )
    assert documented == LAYERS
