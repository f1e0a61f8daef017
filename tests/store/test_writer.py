"""The trio index writer moves journaled events into DuckDB and flushes on shutdown."""

from __future__ import annotations

from pathlib import Path

import trio

from p3log.store.index import indexed_head
from p3log.store.log import INDEX_BATCH_LINES, EventLog
from p3log.store.writer import IndexWriter
from tests.conftest import message_bytes


async def test_events_reach_the_index_without_blocking_the_recorder(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "s") as log:
        async with trio.open_nursery() as nursery:
            await nursery.start(IndexWriter(log).run)
            for n in range(50):
                log.record_message("s", "client", message_bytes("A_REQUEST", str(n)))
            reader = log.index.cursor()  # the writer's thread owns log.index meanwhile
            with trio.fail_after(10):
                while indexed_head(reader) < 50:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert log.pending_count == 0


async def test_cancellation_inserts_what_is_still_pending(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "s") as log:
        async with trio.open_nursery() as nursery:
            await nursery.start(IndexWriter(log, interval=3600).run)
            for n in range(7):
                log.record_message("s", "client", message_bytes("A_REQUEST", str(n)))
            nursery.cancel_scope.cancel()
        assert log.pending_count == 0
        assert indexed_head(log.index) == 7


async def test_a_recorder_waits_for_room_once_too_much_is_pending(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "s") as log:
        writer = IndexWriter(log, interval=3600, max_pending=10)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(9):
                log.record_message("s", "client", message_bytes("A_REQUEST", str(n)))
            with trio.fail_after(1):
                await writer.wait_for_room()  # 9 < 10: no wait, no insert
            assert log.pending_count == 9
            log.record_message("s", "client", message_bytes("A_REQUEST", "9"))
            with trio.fail_after(10):
                await writer.wait_for_room()  # 10 pending: the writer is hurried along
            assert log.pending_count < 10
            nursery.cancel_scope.cancel()
        assert indexed_head(log.index) == 10


async def test_shutdown_at_any_moment_leaves_no_hole_in_the_index(tmp_path: Path) -> None:
    """A batch taken for insertion is inserted even if shutdown cancels the writer."""
    for yields in range(8):
        root = tmp_path / f"s{yields}"
        with EventLog.open(root) as log:
            for n in range(3 * INDEX_BATCH_LINES):
                log.record_message("s", "client", message_bytes("A_REQUEST", str(n)))
            async with trio.open_nursery() as nursery:
                await nursery.start(IndexWriter(log, interval=0).run)
                for _ in range(yields):
                    await trio.sleep(0)
                nursery.cancel_scope.cancel()
            assert log.pending_count == 0
            seqs = [
                row[0]
                for row in log.index.execute("SELECT seq FROM event_log ORDER BY seq").fetchall()
            ]
        assert seqs == list(range(1, 3 * INDEX_BATCH_LINES + 1)), f"hole after {yields} yields"
