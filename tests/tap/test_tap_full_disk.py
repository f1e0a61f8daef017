"""A disk that fills up must not stop payments, corrupt the journal or go unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import trio_websocket

from p3log.store.read import open_store
from p3log.store.verify import verify_store
from tests.tap.conftest import start_tap, websocket_upstream

MESSAGES = 3000


async def test_payments_flow_on_when_the_journal_cannot_be_written(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/", file_size_limit=2 * 1024 * 1024)
        try:
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                for n in range(MESSAGES):
                    text = json.dumps({"type": "PING_REQUEST", "tag": str(n), "pad": "x" * 900})
                    await ws.send_message(text)
                    assert await ws.get_message() == text  # every one still goes through
        finally:
            assert tap.stop() == 0
    assert tap.process.stderr is not None
    complaints = tap.process.stderr.read().splitlines()
    assert any("cannot write the journal" in line for line in complaints), complaints

    report = verify_store(store)  # what was journaled is intact, torn nothing
    assert report.ok, report.problem
    assert 0 < report.count < 2 * MESSAGES
    con = open_store(store)
    try:
        tags = [
            row[0]
            for row in con.execute(
                "SELECT tag FROM events WHERE kind = 'message' AND sender = 'client' ORDER BY seq"
            ).fetchall()
        ]
    finally:
        con.close()
    assert tags == [str(n) for n in range(len(tags))]  # a prefix, in order, no holes
