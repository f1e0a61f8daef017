"""`replay drive` over real sockets: fixture sessions driven against the simulator.

The fixtures were recorded through the tap against `p3log sim --scenario default`
with seed 1 at time-scale 0.01 (fixtures/record.py); a fresh simulator set up the
same way answers a replay of a fixture's POS side exactly as it answered the POS
then, so each drive must reproduce its fixture: no divergence, the same
transaction outcomes, and `p3log diff` finds no difference. Speed 10 divides only
the POS's think times; the simulator keeps its own pace.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from p3log.net.channel import Channel, ChannelClosed, serve_channels
from p3log.pos.runner import DEMO_MERCHANT_SECRET
from p3log.projections.opening import open_store
from p3log.replay.command import EXIT_BAD_INPUT, EXIT_DIVERGED, run_drive_command
from p3log.replay.diff import SessionDiff, diff_sessions
from p3log.replay.drive import ConnectError, DriveConfig, DriveResult, drive_replay
from p3log.replay.drive_plan import DriveOnUnexpected
from p3log.replay.plan import Pacing
from p3log.replay.recording import read_session
from p3log.sim.config import SimConfig
from p3log.sim.server import serve_sim
from tests.replay.conftest import FixtureStores

FLOWS = [
    "simple",
    "decline",
    "server_error",
    "signature",
    "abort",
    "abort_during_action",
    "amend",
    "dropped_connection",  # its first session ends with the server dropping the link
    "demo",  # every flow in one session (the busy reader's second POS aside)
]


def sim_config(seed: int = 1) -> SimConfig:
    return SimConfig.from_files(scenario="default", seed=seed, time_scale=0.01)


async def drive_against_sim(
    store: Path,
    session_id: str,
    *,
    seed: int = 1,
    speed: float = 10.0,
    on_unexpected: DriveOnUnexpected = "fail",
    transport: str = "ws",
) -> DriveResult:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_sim, sim_config(seed), "127.0.0.1", 0, transport)
            url = f"ws://127.0.0.1:{port}/" if transport == "ws" else f"tcp://127.0.0.1:{port}"
            config = DriveConfig(
                store,
                session_id,
                url,
                secret=DEMO_MERCHANT_SECRET,
                pacing=Pacing.at_speed(speed),
                on_unexpected=on_unexpected,
                timeout=5.0,
            )
            result = await drive_replay(config)
            nursery.cancel_scope.cancel()
    return result


def query(store: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = open_store(store)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


OUTCOMES = (
    "SELECT session_id, operation, amount, currency, outcome, transaction_identifier "
    "FROM transactions WHERE session_id IN (?, ?) ORDER BY requested_at"
)


def compare(store: Path, original: str, replay: str) -> tuple[list[Any], list[Any], SessionDiff]:
    """The transactions of both sessions (without the session id) and their diff, read
    through one connection (each open of a store costs a DuckDB start)."""
    con = open_store(store)
    try:
        rows = con.execute(OUTCOMES, [original, replay]).fetchall()
        diff = diff_sessions(read_session(con, original), read_session(con, replay))
    finally:
        con.close()
    return (
        [row[1:] for row in rows if row[0] == original],
        [row[1:] for row in rows if row[0] == replay],
        diff,
    )


@pytest.mark.parametrize("flow", FLOWS)
async def test_driving_a_fixture_against_the_simulator_reproduces_it(
    tmp_path: Path, fixture_stores: FixtureStores, flow: str
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy(flow, store)
    result = await drive_against_sim(store, session_id)
    assert result.divergences == (), [d.summary() for d in result.divergences]
    assert result.outcome == "complete" and result.reproduced
    assert result.pos_sent == result.pos_recorded
    assert result.server_matched == result.server_recorded
    # The same transactions with the same outcomes (and, from a simulator with the
    # same seed, the same identifiers), and nothing for `p3log diff` to show.
    recorded, replayed, diff = compare(store, session_id, result.session_id)
    assert recorded and replayed == recorded
    assert diff.identical, [c.to_json() for c in diff.changes]
    assert diff.same == diff.a_messages == diff.b_messages


async def test_the_run_is_recorded_as_a_new_session_linked_to_its_original(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("abort", store)
    result = await drive_against_sim(store, session_id, speed=20.0)
    rows = query(
        store,
        "SELECT kind, sender, msg_type, tag, payload FROM events WHERE session_id = ? ORDER BY seq",
        result.session_id,
    )
    kinds = [row[0] for row in rows]
    assert kinds[:2] == ["replay_started", "connection_opened"]
    assert kinds[-2:] == ["connection_closed", "replay_finished"]
    started = json.loads(rows[0][4])
    assert {key: started[key] for key in ("replay_of", "mode", "speed", "pacing")} == {
        "replay_of": session_id,
        "mode": "drive",
        "speed": 20.0,
        "pacing": "speed",
    }
    assert started["target"].startswith("ws://127.0.0.1:") and started["on_unexpected"] == "fail"
    assert json.loads(rows[1][4])["recorded_by"] == "client"
    finished = json.loads(rows[-1][4])
    assert finished["outcome"] == "complete" and finished["divergences"] == 0
    assert json.loads(rows[-2][4])["by"] == "client"  # the POS closed, as recorded
    # The secret went to the server and was redacted on the way into the store.
    login = rows[2][4]
    assert DEMO_MERCHANT_SECRET not in login and "[REDACTED merchantSecret" in login
    # Fresh tags: none of the recorded ones.
    recorded_tags = {
        row[0] for row in query(store, "SELECT tag FROM events WHERE session_id = ?", session_id)
    }
    assert recorded_tags.isdisjoint({row[3] for row in rows if row[0] == "message"})


async def test_a_server_that_answers_differently_diverges(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("amend", store)
    # Another seed: other cards and other identifiers.
    result = await drive_against_sim(store, session_id, seed=2)
    assert result.outcome == "diverged" and not result.reproduced
    assert result.failure is not None and "differs at " in result.failure
    assert "cardDetails" in result.failure
    rows = query(
        store,
        "SELECT kind, payload FROM events WHERE session_id = ? AND kind <> 'message' ORDER BY seq",
        result.session_id,
    )
    assert [row[0] for row in rows] == [
        "replay_started",
        "connection_opened",
        "replay_divergence",
        "connection_closed",
        "replay_finished",
    ]
    assert json.loads(rows[2][1])["peer"] == "server"
    closed = json.loads(rows[3][1])
    assert closed["by"] == "client" and closed["reason"].startswith("replay diverged: ")


async def test_continue_drives_on_and_the_diff_shows_what_changed(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("amend", store)
    result = await drive_against_sim(store, session_id, seed=2, on_unexpected="continue")
    assert result.outcome == "complete" and result.divergences and not result.reproduced
    # The refunds, captures and tip adjusts referred to the live identifiers.
    recorded, live, diff = compare(store, session_id, result.session_id)
    assert [row[:4] for row in live] == [row[:4] for row in recorded]
    assert {row[4] for row in live}.isdisjoint({row[4] for row in recorded})
    assert diff.count("missing") == diff.count("extra") == 0
    assert diff.count("changed") == len(result.divergences)
    # Other cards: what differs is the card, and the receipts that print it.
    paths = {field.path for change in diff.changes for field in change.fields}
    card = (".cardDetails.", ".paymentDetails.", "Receipt.data.PAYMENT_DETAILS_")
    assert paths and all(any(part in path for part in card) for path in paths), paths


async def test_framed_tcp(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("signature", store)
    result = await drive_against_sim(store, session_id, transport="tcp")
    assert result.reproduced, [d.summary() for d in result.divergences]


async def test_a_silent_server_times_out(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("simple", store)

    async def silent(channel: Channel) -> None:
        try:
            while True:
                await channel.receive()
        except ChannelClosed:
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_channels, silent, "127.0.0.1", 0, "ws")
            config = DriveConfig(
                store, session_id, f"ws://127.0.0.1:{port}/", secret="s", timeout=0.2
            )
            result = await drive_replay(config)
            nursery.cancel_scope.cancel()
    assert result.outcome == "diverged" and result.pos_sent == 1
    (late,) = result.divergences
    assert late.rule == "timeout"
    assert late.summary() == (
        "the server sent nothing the recording expected for 0.2 s, but the recording "
        "expected LOGIN_MERCHANT_RESPONSE (seq 4)"
    )


async def test_an_unreachable_target_records_nothing(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("simple", store)
    with trio.socket.socket() as taken:  # a port nobody listens on
        await taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    config = DriveConfig(store, session_id, f"ws://127.0.0.1:{port}/", secret="s")
    with pytest.raises(ConnectError, match=f"cannot connect to ws://127.0.0.1:{port}/"):
        await drive_replay(config)
    assert query(store, "SELECT count(DISTINCT session_id) FROM events") == [(1,)]


def run_sim_thread() -> tuple[int, Any]:
    """A simulator (seed 1, time-scale 0.01) in a thread of its own; its port and a stop."""
    ports: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_sim, sim_config(), "127.0.0.1", 0, "ws")
            ports.put((port, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    thread = threading.Thread(target=trio.run, args=(main,))
    thread.start()
    port, token, scope = ports.get(timeout=10)

    def stop() -> None:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(timeout=10)

    return port, stop


def test_the_command_exits_0_when_reproduced_and_1_when_not(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("decline", store)
    out: list[str] = []
    err: list[str] = []
    port, stop = run_sim_thread()
    try:
        target = f"ws://127.0.0.1:{port}/"
        config = DriveConfig(store, session_id[:6], target, secret="s", pacing=Pacing("asap"))
        assert run_drive_command(config, announce=out.append, complain=err.append) == 0
        assert err == [] and out[0].startswith(f"p3log replay: driving session {session_id}")
        assert out[1].endswith(
            "complete; 2/2 POS messages sent, 7/7 server messages matched, 0 divergences"
        )
        # The simulator's rule cycle moved on: the same execute is approved this time.
        code = run_drive_command(config, announce=out.append, complain=err.append)
    finally:
        stop()
    assert code == EXIT_DIVERGED
    (line,) = err
    assert line.startswith("p3log replay: diverged: the server sent EXECUTE_TRANSACTION_UPDATE")


def test_without_the_secret_drive_stops_before_connecting(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    store = tmp_path / "store"
    session_id = fixture_stores.copy("simple", store)
    env = {key: value for key, value in os.environ.items() if key != "P3LOG_MERCHANT_SECRET"}
    args = ["replay", "drive", "--store", str(store), "--session", session_id]
    result = subprocess.run(
        [sys.executable, "-m", "p3log", *args, "--target", "ws://127.0.0.1:9/"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == EXIT_BAD_INPUT and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"p3log: $P3LOG_MERCHANT_SECRET is not set: session {session_id} logs in, and the "
        "store never holds the merchant secret (set P3LOG_MERCHANT_SECRET, or name another "
        "variable with --secret-env)"
    ]
    assert query(store, "SELECT count(DISTINCT session_id) FROM events") == [(1,)]
