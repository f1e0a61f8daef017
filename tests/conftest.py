"""Shared test helpers: P3 messages as bytes, and stores filled with them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p3log.store.keys import KEY_DIR_ENV, KEY_FILE_ENV
from p3log.store.log import EventLog


@pytest.fixture(autouse=True, scope="session")
def fingerprint_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every store the tests make keeps its fingerprint key here, not in the home
    directory; set in os.environ, so the p3log processes tests start inherit it."""
    keys = tmp_path_factory.mktemp("fingerprint-keys")
    saved = {name: os.environ.pop(name, None) for name in (KEY_DIR_ENV, KEY_FILE_ENV)}
    os.environ[KEY_DIR_ENV] = str(keys)
    yield keys
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


def message_bytes(msg_type: str, tag: str, **fields: object) -> bytes:
    return json.dumps({"type": msg_type, "tag": tag, **fields}).encode()


def fill_store(root: Path, count: int, session_id: str = "s1") -> None:
    """`count` events alternating client requests and server responses."""
    with EventLog.open(root) as log:
        for n in range(count):
            sender = "client" if n % 2 == 0 else "server"
            kind = "REQUEST" if sender == "client" else "RESPONSE"
            log.record_message(session_id, sender, message_bytes(f"PING_{kind}", f"t{n // 2}", n=n))


@pytest.fixture
def store_with(tmp_path: Path) -> Callable[[int], Path]:
    def make(count: int) -> Path:
        root = tmp_path / "store"
        fill_store(root, count)
        return root

    return make
