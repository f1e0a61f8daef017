"""Every command that writes a store, killed with SIGKILL at a random moment, leaves
the store usable: `verify` passes, the store opens, and an import is all or nothing.

Each command runs as a real `p3log` process; it is killed at a point drawn from a
seeded generator within the time a full run takes (measured first), so the kills
land while it works, not only while Python starts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
import trio_websocket

from p3log.pos.runner import DEMO_MERCHANT_SECRET
from p3log.store.journal import IncomingSegment, segment_paths
from p3log.store.read import open_store
from p3log.store.transfer import export_store, import_jsonl
from p3log.store.verify import verify_store
from tests.conftest import fill_store
from tests.processes import ServerProcess, start_p3log_server
from tests.tap.conftest import kill_tap, start_tap, websocket_upstream

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
SESSIONS = ROOT / "fixtures" / "sessions"
SEEDS = (11, 22, 33)
EVENTS = 6_000
BULK_EVENTS = 20_000


def _argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "p3log", *map(str, args)]


def _timed_run(argv: Sequence[str], ok: Sequence[int] = (0,)) -> float:
    """How long `argv` takes to finish (with an exit code in `ok`)."""
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode in ok, done.stderr
    return time.monotonic() - started


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "300", "P3LOG_MERCHANT_SECRET": DEMO_MERCHANT_SECRET}


def _kill_at_random(argv: Sequence[str], rng: random.Random, full_run: float) -> None:
    """Start `argv` and SIGKILL it at a random moment in the later part of a full run
    (the earlier part is mostly Python starting up); it may also finish first."""
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    try:
        process.wait(timeout=rng.uniform(0.3, 1.0) * full_run)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _usable(store: Path) -> int:
    """Assert the store verifies and opens; returns how many events it holds."""
    report = verify_store(store)
    assert report.ok, report.problem
    con = open_store(store)
    try:
        (count,) = con.execute("SELECT count(*) FROM events").fetchone() or (0,)
        con.execute("SELECT count(*) FROM event_log").fetchall()
    finally:
        con.close()
    assert count == report.count
    return int(count)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of EVENTS pings plus every recorded fixture session, and its export."""
    work = tmp_path_factory.mktemp("kill")
    fill_store(work / "base", EVENTS, session_id="pings")
    for path in sorted(SESSIONS.glob("*.jsonl")):
        import_jsonl(work / "base", path)
    export_store(work / "base", "jsonl", work / "base.jsonl")
    return work


def _copy(work: Path, name: str) -> Path:
    target = work / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(work / "base", target)
    return target


def test_a_killed_import_imports_everything_or_nothing(work: Path) -> None:
    source = work / "base.jsonl"
    total = verify_store(work / "base").count
    full_run = _timed_run(_argv("import", "--store", work / "calibrate", source))
    for seed in SEEDS:
        store = work / f"import-{seed}"
        fill_store(store, 3, session_id=f"before-{seed}")
        _kill_at_random(_argv("import", "--store", store, source), random.Random(seed), full_run)
        assert _usable(store) in (3, 3 + total)
        # Running it again completes the import, or is refused: never twice.
        again = subprocess.run(
            _argv("import", "--store", store, source), capture_output=True, text=True, env=_env()
        )
        assert again.returncode in (0, 2), again.stderr
        assert _usable(store) == 3 + total
        assert not list((store / "journal" / "incoming").glob("*"))


def test_a_bulk_import_killed_between_its_writes_leaves_the_journal_as_it_was(
    work: Path,
) -> None:
    """An import of ~1 KB events many write(2) batches long (IncomingSegment.WRITE_BYTES):
    after the kill the journal is byte for byte what it was, or holds the whole file."""
    source = work / "bulk.jsonl"
    pad = "x" * 1000
    source.write_bytes(
        b"".join(
            json.dumps(
                {
                    "session_id": f"bulk{n % 9}",
                    "sender": "client",
                    "kind": "message",
                    "recorded_at_us": 1_764_280_000_000_000 + n,
                    "mono_ns": n,
                    "payload": json.dumps({"type": "X", "tag": str(n), "pad": pad}),
                }
            ).encode()
            + b"\n"
            for n in range(BULK_EVENTS)
        )
    )
    assert source.stat().st_size > 4 * IncomingSegment.WRITE_BYTES
    full_run = _timed_run(_argv("import", "--store", _copy(work, "bulk-calibrate"), source))
    for seed in SEEDS:
        store = _copy(work, f"bulk-{seed}")
        before = _journal_bytes(store)
        _kill_at_random(_argv("import", "--store", store, source), random.Random(seed), full_run)
        count = _usable(store)  # opens the store: recovery deletes what incoming/ holds
        journal = _journal_bytes(store)
        if count == len(before.splitlines()):
            assert journal == before
        else:
            assert count == len(before.splitlines()) + BULK_EVENTS
            assert journal.startswith(before)
        assert not list((store / "journal" / "incoming").glob("*"))


def _journal_bytes(store: Path) -> bytes:
    return b"".join(path.read_bytes() for path in segment_paths(store / "journal"))


def test_a_killed_jsonl_export_leaves_no_file_or_a_whole_one(work: Path) -> None:
    total = verify_store(work / "base").count
    full_run = _timed_run(_argv("export", "--store", work / "base", "--to", work / "c.jsonl"))
    for seed in SEEDS:
        target = work / f"export-{seed}.jsonl"
        argv = _argv("export", "--store", work / "base", "--to", target)
        _kill_at_random(argv, random.Random(seed), full_run)
        assert _usable(work / "base") == total
        if target.exists():
            assert import_jsonl(work / f"from-export-{seed}", target) == total
        for partial in work.glob(f".export-{seed}.jsonl.*.partial"):  # what the kill left
            partial_store = work / f"partial-{seed}"
            subprocess.run(_argv("import", "--store", partial_store, partial), env=_env())
            # Cut short: refused, or empty (killed before its header), so nothing of it
            # is imported; or whole (killed between its end line and the rename): all.
            if (partial_store / "store.json").exists():
                assert _usable(partial_store) in (0, total)


def test_a_killed_rebuild_leaves_the_store_usable(work: Path) -> None:
    total = verify_store(work / "base").count
    full_run = _timed_run(_argv("rebuild", "--store", _copy(work, "rebuild-calibrate")))
    for seed in SEEDS:
        store = _copy(work, f"rebuild-{seed}")
        _kill_at_random(_argv("rebuild", "--store", store), random.Random(seed), full_run)
        assert _usable(store) == total
        done = subprocess.run(
            _argv("transactions", "--store", store), capture_output=True, text=True, env=_env()
        )
        assert done.returncode == 0, done.stderr


def test_a_killed_catch_up_of_the_index_on_open_leaves_the_store_usable(work: Path) -> None:
    """`p3log sql` on a store whose index is behind its journal (here: missing) brings
    it level first; killed meanwhile, the next open finishes the work."""
    total = verify_store(work / "base").count
    query = ("sql", "--store")
    calibrate = _copy(work, "sql-calibrate")
    (calibrate / "index.duckdb").unlink()
    full_run = _timed_run(_argv(*query, calibrate, "SELECT count(*) FROM events"))
    for seed in SEEDS:
        store = _copy(work, f"sql-{seed}")
        (store / "index.duckdb").unlink()
        argv = _argv(*query, store, "SELECT count(*) FROM events")
        _kill_at_random(argv, random.Random(seed), full_run)
        assert _usable(store) == total


@contextmanager
def _sim() -> Iterator[ServerProcess]:
    sim = start_p3log_server(
        "sim", "--listen", "127.0.0.1:0", "--transport", "ws", "--time-scale", "0.01"
    )
    try:
        yield sim
    finally:
        sim.stop(timeout=60)


def test_a_killed_recording_pos_leaves_the_store_usable(tmp_path: Path) -> None:
    script = ROOT / "fixtures" / "pos" / "demo.toml"
    with _sim() as sim:
        pos = ("pos", "--url", sim.url, "--script", script, "--record")
        full_run = _timed_run(_argv(*pos, tmp_path / "calibrate"))
        for seed in SEEDS:
            store = tmp_path / f"pos-{seed}"
            _kill_at_random(_argv(*pos, store), random.Random(seed), full_run)
            if (store / "store.json").exists():
                _usable(store)


def test_a_killed_replay_drive_leaves_the_store_usable(work: Path) -> None:
    """`replay drive` records its run into the store it replays from."""
    session = _first_session(SESSIONS / "simple.jsonl")
    with _sim() as sim:
        drive = ("replay", "drive", "--session", session, "--target", sim.url, "--asap")
        # The simulator's cards differ from the recording's: a divergence, exit 1.
        full_run = _timed_run(_argv(*drive, "--store", _copy(work, "drive-calibrate")), ok=(0, 1))
        for seed in SEEDS:
            store = _copy(work, f"drive-{seed}")
            _kill_at_random(_argv(*drive, "--store", store), random.Random(seed), full_run)
            assert _usable(store) >= verify_store(work / "base").count


def test_a_killed_replay_serve_leaves_the_store_usable(work: Path) -> None:
    """`replay serve` records its run too; killed while `replay drive` plays the POS
    side against it (the drive's own store is another copy)."""
    session = _first_session(SESSIONS / "simple.jsonl")
    serve = ("replay", "serve", "--session", session, "--listen", "127.0.0.1:0", "--asap")
    for seed in SEEDS:
        store = _copy(work, f"serve-{seed}")
        server = start_p3log_server(*serve[:2], "--store", str(store), *serve[2:])
        drive = _argv(
            "replay",
            "drive",
            "--store",
            _copy(work, f"serve-pos-{seed}"),
            "--session",
            session,
            "--target",
            server.url,
            "--asap",
        )
        pos = subprocess.Popen(
            drive, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
        )
        time.sleep(random.Random(seed).uniform(0.0, 2.0))
        server.kill()
        pos.wait(timeout=60)
        assert _usable(store) >= verify_store(work / "base").count


def _first_session(fixture: Path) -> str:
    first = json.loads(fixture.read_text().splitlines()[0])
    return str(first["session_id"])


async def _talk(url: str) -> None:
    """Send messages through the tap until it goes away."""
    try:
        async with trio_websocket.open_websocket_url(url) as ws:
            for n in range(1_000_000):
                await ws.send_message(f'{{"type":"PING_REQUEST","tag":"{n}"}}')
                await ws.get_message()
    except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
        pass


async def test_a_killed_tap_with_traffic_leaves_the_store_usable(tmp_path: Path) -> None:
    async with websocket_upstream() as upstream_port:
        for seed in SEEDS:
            store = tmp_path / f"tap-{seed}"
            for life in range(2):  # killed, then restarted on the same store and killed again
                tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
                async with trio.open_nursery() as clients:
                    for _ in range(3):
                        clients.start_soon(_talk, tap.ws_url)
                    await trio.sleep(random.Random(seed * 10 + life).uniform(0.2, 1.5))
                    kill_tap(tap)
                    clients.cancel_scope.cancel()
                assert tap.process.returncode == -signal.SIGKILL
                assert _usable(store) > 0
