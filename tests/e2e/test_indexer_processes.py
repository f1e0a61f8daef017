"""The tap journals, its indexer process indexes: kills of either or both, a reader
holding the index, and an indexer that falls behind. Real processes throughout: the
tap (`p3log tap`), the indexer child it starts (`p3log index --follow`), WebSocket
clients and an echo upstream on 127.0.0.1, DuckDB files on disk."""

from __future__ import annotations

import itertools
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import trio
import trio_websocket

from p3log.store.verify import verify_store
from tests.conftest import fill_store
from tests.processes import ServerProcess, run_p3log, start_p3log_server
from tests.tap.conftest import alive, indexer_pid, start_tap, websocket_upstream

pytestmark = pytest.mark.slow

SESSIONS = 20
_PAD = "x" * 1000  # ~1 KB messages, as a POS sends


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _until(condition: object, seconds: float = 60) -> None:
    """Wait until `condition()` holds (polled; generous, never a timing assertion)."""
    with trio.fail_after(seconds):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.05)


async def _talk(url: str, client: int, answered: set[str], count: int | None = None) -> None:
    """Ping through the tap (until it goes, or `count` times); notes each tag answered."""
    try:
        async with trio_websocket.open_websocket_url(url) as ws:
            for n in range(count) if count is not None else itertools.count():
                tag = f"{client}-{n}"
                await ws.send_message(f'{{"type":"PING_REQUEST","tag":"{tag}","pad":"{_PAD}"}}')
                await ws.get_message()
                answered.add(tag)
    except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
        if count is not None:
            raise


def _tap_and_indexer(store: Path, upstream_port: int) -> tuple[ServerProcess, int]:
    """A tap relaying to the echo upstream, and the pid of its indexer child."""
    tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
    indexer = indexer_pid(tap)
    assert indexer is not None
    return tap, indexer


def _index_holds_every_event(store: Path, answered: set[str]) -> None:
    """Every answered message (both ways) is in the index, no seq twice, verify passes
    and the index is level with the journal."""
    report = verify_store(store)
    assert report.ok, report.problem
    assert report.indexed == report.count
    with duckdb.connect(str(store / "index.duckdb"), read_only=True) as con:
        count, distinct, last = con.execute(
            "SELECT count(*), count(DISTINCT seq), max(seq) FROM event_log"
        ).fetchall()[0]
        assert count == distinct == last == report.count
        rows = con.execute(
            "SELECT tag, sender FROM event_log WHERE kind = 'message' AND msg_type = 'PING_REQUEST'"
        ).fetchall()
    recorded = {tag for tag, sender in rows if sender == "client"}
    assert answered <= recorded, sorted(answered - recorded)[:5]


@pytest.mark.parametrize(
    "kills", [("tap",), ("indexer",), ("tap", "indexer"), ("indexer", "tap")], ids="-".join
)
async def test_killing_the_tap_or_its_indexer_loses_and_repeats_nothing(
    tmp_path: Path, kills: tuple[str, ...]
) -> None:
    store = tmp_path / "store"
    answered: set[str] = set()
    async with websocket_upstream() as port:
        tap, indexer = _tap_and_indexer(store, port)
        pids = {"tap": tap.process.pid, "indexer": indexer}
        async with trio.open_nursery() as clients:
            for client in range(SESSIONS):
                clients.start_soon(_talk, tap.ws_url, client, answered)
            await _until(lambda: len(answered) > 20 * SESSIONS)
            for who in kills:
                os.kill(pids[who], signal.SIGKILL)
                await trio.sleep(0.3)
            if "tap" not in kills:
                # The tap restarts its indexer, and the sessions carry on meanwhile.
                await _until(lambda: indexer_pid(tap) not in (None, indexer))
                relayed = len(answered)
                await _until(lambda: len(answered) > relayed + 100)
                clients.cancel_scope.cancel()
        if "tap" in kills:
            tap.process.wait()
            # An indexer left running sees its stdin end: it catches up and exits.
            await _until(lambda: not alive(indexer))
        else:
            code = tap.stop()
            stderr = tap.process.stderr.read() if tap.process.stderr else ""
            assert code == 0, stderr
            assert "was killed by SIGKILL; restarting it in 1 s" in stderr, stderr
    caught_up = run_p3log("index", "--store", store)
    assert caught_up.returncode == 0, caught_up.stderr
    _index_holds_every_event(store, answered)


_READER = """
import sys, p3log
con = p3log.open_store(sys.argv[1])  # the idle store: index.duckdb read-only
print(con.execute("SELECT count(*) FROM events").fetchall()[0][0], flush=True)
sys.stdin.read()  # hold it until told
"""


async def test_a_reader_holding_the_index_does_not_stop_the_tap(tmp_path: Path) -> None:
    store = tmp_path / "store"
    fill_store(store, 10)
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdin is not None
    assert reader.stdout.readline() == "10\n"
    answered: set[str] = set()
    async with websocket_upstream() as port:
        tap = start_tap(store, f"ws://127.0.0.1:{port}/")  # it starts: the journal is free
        await _talk(tap.ws_url, 0, answered, count=50)  # and relays
        assert tap.process.stderr is not None
        with trio.fail_after(60):  # its indexer names the reader, and waits for it
            said = await trio.to_thread.run_sync(tap.process.stderr.readline)
        assert f"open in another process (PID {reader.pid}): indexing when it is free" in said
        await _talk(tap.ws_url, 1, answered, count=50)
        reader.stdin.close()
        assert reader.wait(timeout=30) == 0
        await _talk(tap.ws_url, 2, answered, count=50)
        assert tap.stop() == 0
    assert "another process" not in tap.process.stderr.read()  # said once
    _index_holds_every_event(store, answered)


async def test_a_paused_indexer_costs_the_tap_no_memory_and_no_messages(tmp_path: Path) -> None:
    store = tmp_path / "store"
    answered: set[str] = set()
    async with websocket_upstream() as port:
        tap, indexer = _tap_and_indexer(store, port)
        async with trio.open_nursery() as clients:  # warm up: buffers, caches, sessions
            for client in range(4):
                clients.start_soon(_talk, tap.ws_url, client, answered, 300)
        os.kill(indexer, signal.SIGSTOP)
        try:
            before = _rss_kb(tap.process.pid)
            async with trio.open_nursery() as clients:
                for client in range(4, 8):
                    clients.start_soon(_talk, tap.ws_url, client, answered, 2_000)
            after = _rss_kb(tap.process.pid)
        finally:
            os.kill(indexer, signal.SIGCONT)
        assert len(answered) == 4 * 300 + 4 * 2_000  # every message went through
        # 16,000 events (~20 MB of record lines) were journaled while nothing indexed
        # them: none of it waits in the tap's memory.
        assert after - before < 12_000, (before, after)
        assert tap.stop() == 0  # the indexer, resumed, drains before the tap exits
    _index_holds_every_event(store, answered)


async def test_a_tap_stops_while_its_indexer_is_paused_and_the_indexer_catches_up_alone(
    tmp_path: Path,
) -> None:
    """SIGTERM must stop the tap even when its indexer cannot finish (paused here): the
    tap says so and exits; the indexer, resumed, catches up and exits by itself."""
    store = tmp_path / "store"
    answered: set[str] = set()
    async with websocket_upstream() as port:
        tap, indexer = _tap_and_indexer(store, port)
        os.kill(indexer, signal.SIGSTOP)
        try:
            await _talk(tap.ws_url, 0, answered, count=200)
            assert tap.stop() == 0  # before: waited for the paused indexer for ever
        finally:
            os.kill(indexer, signal.SIGCONT)
        assert tap.process.stderr is not None
        assert f"the indexer (pid {indexer}) is still catching up" in tap.process.stderr.read()
    await _until(lambda: not alive(indexer))
    _index_holds_every_event(store, answered)


def _damage_index(store: Path) -> None:
    (store / "index.duckdb").write_bytes(b"not a DuckDB database\n" * 200)


def test_index_follow_refuses_a_damaged_index_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    fill_store(store, 10)
    _damage_index(store)
    result = run_p3log("index", "--store", store, "--follow")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one plain line, no traceback
    assert "is damaged" in result.stderr


async def test_a_tap_whose_indexer_refuses_the_store_records_and_says_so_once(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    fill_store(store, 10)
    _damage_index(store)
    answered: set[str] = set()
    async with websocket_upstream() as port:
        tap = start_tap(store, f"ws://127.0.0.1:{port}/")
        assert tap.process.stderr is not None
        with trio.fail_after(60):  # the indexer's refusal, then the tap's own line
            said = [await trio.to_thread.run_sync(tap.process.stderr.readline) for _ in "12"]
        assert "is damaged" in said[0], said
        assert "not restarting it" in said[1], said
        # A restarted indexer would refuse again (after 1 s, 2 s, ...): give it time to.
        await trio.sleep(4)
        assert indexer_pid(tap) is None
        await _talk(tap.ws_url, 0, answered, count=50)  # the tap records on
        assert tap.stop() == 0
        rest = tap.process.stderr.read()
    assert "damaged" not in rest and "indexer" not in rest, rest  # said once
    (store / "index.duckdb").unlink()  # as the line says: delete it, index by hand
    caught_up = run_p3log("index", "--store", store)
    assert caught_up.returncode == 0, caught_up.stderr
    _index_holds_every_event(store, answered)


def _open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


async def test_a_tap_that_cannot_start_its_indexer_records_on(tmp_path: Path) -> None:
    """Its indexer died while the tap's descriptors are all in use (connections), so the
    restart fails (EMFILE): the tap says so, records on, and starts one once it can."""
    store = tmp_path / "store"
    limit = 64

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    answered: set[str] = set()
    async with websocket_upstream() as port:
        tap = start_p3log_server(
            "tap", "--listen", "127.0.0.1:0", "--upstream", f"ws://127.0.0.1:{port}/",
            "--store", str(store), preexec_fn=few_descriptors,
        )  # fmt: skip
        indexer = indexer_pid(tap)
        assert indexer is not None
        release = trio.Event()

        async def hold(client: int) -> None:  # an open session, idle once it has talked
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                await ws.send_message(f'{{"type":"PING_REQUEST","tag":"{client}-0"}}')
                await ws.get_message()
                answered.add(f"{client}-0")
                await release.wait()

        async with trio.open_nursery() as clients:
            client = 0
            while _open_fds(tap.process.pid) < limit - 1:  # each session: 2 descriptors
                clients.start_soon(hold, client)
                client += 1
                await _until(lambda n=client: len(answered) == n)
            os.kill(indexer, signal.SIGKILL)
            assert tap.process.stderr is not None
            with trio.fail_after(60):
                said = [await trio.to_thread.run_sync(tap.process.stderr.readline) for _ in "12"]
            assert "was killed by SIGKILL; restarting it in 1 s" in said[0], said
            assert "cannot start the indexer" in said[1], said
            assert tap.process.poll() is None, tap.process.stderr.read()  # it records on
            release.set()
        await _talk(tap.ws_url, 1000, answered, count=20)
        await _until(lambda: indexer_pid(tap) is not None)  # started once it could be
        assert tap.stop() == 0, tap.process.stderr.read()
    _index_holds_every_event(store, answered)


_LEVELLING_READER = """
import sys
from p3log.store.read import open_store

class Slow:  # a catch-up that takes a while (a long backlog): held until told
    def follow(self, index):
        print("levelling", flush=True)
        sys.stdin.readline()

con = open_store(sys.argv[1], followers=[Slow()])
print(con.execute("SELECT count(*) FROM events").fetchall()[0][0], flush=True)
"""


async def test_a_tap_starts_while_a_reader_brings_the_index_level(tmp_path: Path) -> None:
    """A reader levelling an idle store's index (after a kill, a long backlog) needs
    index.lock, not the journal's: a tap started meanwhile records, and its indexer
    waits for the index."""
    store = tmp_path / "store"
    fill_store(store, 10)
    reader = subprocess.Popen(
        [sys.executable, "-c", _LEVELLING_READER, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdin is not None
    try:
        assert reader.stdout.readline() == "levelling\n"
        answered: set[str] = set()
        async with websocket_upstream() as port:
            tap = start_tap(store, f"ws://127.0.0.1:{port}/")  # the journal is free
            await _talk(tap.ws_url, 0, answered, count=50)
            reader.stdin.write("\n")
            reader.stdin.flush()
            assert reader.stdout.readline() == "10\n"  # the index, as levelled
            await _talk(tap.ws_url, 1, answered, count=50)
            assert tap.stop() == 0, tap.process.stderr.read() if tap.process.stderr else ""
    finally:
        reader.kill()
        reader.wait()
    _index_holds_every_event(store, answered)


def _garble_a_line_unindexed(store: Path) -> None:
    """The journal's line before last garbled inside (its seq and chain fields intact,
    as the follower reads them), and the last two not yet in the index."""
    (journal,) = sorted((store / "journal").glob("*.jsonl"))
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[-2] = lines[-2].replace(b'"kind":"message"', b'"kind":message"', 1)
    journal.write_bytes(b"".join(lines))
    with duckdb.connect(str(store / "index.duckdb")) as con:
        con.execute(f"DELETE FROM event_log WHERE seq >= {len(lines) - 1}")


@pytest.mark.parametrize("command", [("sql", "SELECT count(*) FROM events"), ("index",)])
def test_a_garbled_journal_line_is_refused_in_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    store = tmp_path / "store"
    fill_store(store, 10)
    _garble_a_line_unindexed(store)
    result = run_p3log(command[0], "--store", store, *command[1:])
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "run p3log verify" in result.stderr, result.stderr
