"""A store of the recorded fixture sessions, shared by the report's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from p3log.projections.opening import open_store
from p3log.store.transfer import import_jsonl

SESSIONS = Path(__file__).parents[2] / "fixtures" / "sessions"


@pytest.fixture(scope="session")
def fixture_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fixture session but the long demo: aborts accepted and refused, an
    INCOMPLETE transaction, signature actions, amends. Tests must not change it
    (copy it with `store_copy`)."""
    root = tmp_path_factory.mktemp("report") / "store"
    for path in sorted(SESSIONS.glob("*.jsonl")):
        if path.stem != "demo":
            import_jsonl(root, path)
    open_store(root).close()  # project once, so that every test reads the same tables
    return root


@pytest.fixture
def store_copy(fixture_store: Path, tmp_path: Path) -> Path:
    """A copy of `fixture_store` a test may tamper with."""
    root = tmp_path / "store"
    shutil.copytree(fixture_store, root)
    return root
