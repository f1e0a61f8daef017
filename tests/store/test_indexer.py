"""The indexer's cadence: at a wake-up it inserts what was journaled then, in large
batches, and rests between wake-ups instead of chasing the recorder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pytest
import trio
import trio.testing

from p3log.store import indexer as indexer_module
from p3log.store.index import indexed_head
from p3log.store.indexer import INDEX_BATCH_LINES, keep_up
from p3log.store.log import EventLog
from tests.conftest import message_bytes


def _record(log: EventLog, count: int) -> None:
    for _ in range(count):
        log.record_message("s", "client", message_bytes("A_REQUEST", "t"))


def test_a_wake_up_inserts_only_what_was_journaled_when_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[int] = []
    with EventLog.open(tmp_path / "s") as log:
        real_insert = indexer_module.insert_records

        def insert_while_recording(con: duckdb.DuckDBPyConnection, lines: Sequence[bytes]) -> None:
            real_insert(con, lines)
            inserts.append(len(lines))
            _record(log, 100)  # the recorder goes on meanwhile

        monkeypatch.setattr(indexer_module, "insert_records", insert_while_recording)
        _record(log, 3 * INDEX_BATCH_LINES + 5)
        assert log.indexer is not None
        assert log.indexer.catch_up() == 3 * INDEX_BATCH_LINES + 5
        # Four large batches, not a chase of the 400 lines journaled meanwhile.
        assert inserts == [INDEX_BATCH_LINES] * 3 + [5]
        assert indexed_head(log.index) == 3 * INDEX_BATCH_LINES + 5
        assert log.indexer.catch_up() == 400  # the next wake-up takes those
        monkeypatch.setattr(indexer_module, "insert_records", real_insert)
        assert log.flush() == 100
        assert indexed_head(log.index) == log.head[0]


def test_under_steady_load_it_wakes_once_an_interval_and_drains_on_shutdown(
    tmp_path: Path,
) -> None:
    wake_ups = 0
    with EventLog.open(tmp_path / "s") as log:
        indexer = log.indexer
        assert indexer is not None
        catch_up = indexer.catch_up

        def counted() -> int:
            nonlocal wake_ups
            wake_ups += 1
            return catch_up()

        indexer.catch_up = counted  # type: ignore[method-assign]

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(keep_up, indexer, 0.5)
                for _ in range(500):  # 5 s of 20 events every 10 ms
                    _record(log, 20)
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        # One catch-up per 0.5 s over 5 s, and one on shutdown: not back to back.
        assert wake_ups <= 5 / 0.5 + 1
        assert indexed_head(log.index) == 500 * 20 == log.head[0]
