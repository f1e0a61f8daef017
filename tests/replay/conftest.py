"""Fixture sessions imported once per test run, copied into each test's directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from p3log.projections.opening import open_log
from p3log.replay.recording import RecordedSession, load_session
from tests.replay.sessions import fixture_store


class FixtureStores:
    """One imported store per fixture flow (importing costs a DuckDB open each time)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[str, tuple[Path, str, RecordedSession]] = {}

    def _template(self, name: str) -> tuple[Path, str, RecordedSession]:
        if name not in self._made:
            store = self.root / name
            session_id = fixture_store(store, name)
            with open_log(store):  # build the projection tables once, not in every copy
                pass
            self._made[name] = (store, session_id, load_session(store, session_id))
        return self._made[name]

    def copy(self, name: str, target: Path) -> str:
        """A fresh store at `target` holding fixtures/sessions/NAME.jsonl; its main session."""
        template, session_id, _ = self._template(name)
        shutil.copytree(template, target)
        return session_id

    def recording(self, name: str) -> RecordedSession:
        return self._template(name)[2]


@pytest.fixture(scope="session")
def fixture_stores(tmp_path_factory: pytest.TempPathFactory) -> FixtureStores:
    return FixtureStores(tmp_path_factory.mktemp("fixture-stores"))
