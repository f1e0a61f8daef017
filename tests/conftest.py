"""Shared test helpers: P3 messages as bytes, and stores filled with them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from p3log.store.log import EventLog


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
