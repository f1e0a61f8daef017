"""Whole incidents: every recorded connection replayed, concurrently, in its recorded
relation to the others.

The incident (tests/replay/incident.toml) is recorded once per test run through a
real tap in front of a real simulator: a till's signature sale during which a second
till's connection is refused ACCESSORY_BUSY, then a sale the server drops
mid-transaction, and the POS's reconnect with the next sale: three connections.
Served back to the same POS script (three client connections), each connection must
replay its own recording, in the recorded order, none before its recorded offset;
driven against a fresh simulator, each must reproduce its outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from p3log.loop import run_through_tap
from p3log.net.channel import open_channel
from p3log.pos.runner import DEMO_MERCHANT_SECRET, run_script
from p3log.pos.script import load_script
from p3log.projections.opening import open_log
from p3log.protocol.dialect import DEFAULT_DIALECT
from p3log.replay.diff import diff_sessions
from p3log.replay.incident import Incident, SessionSelection, assign, load_incident
from p3log.replay.plan import Pacing
from p3log.replay.recording import ReplayError, load_session
from p3log.replay.results import IncidentResult
from p3log.replay.serve import ServeConfig, serve_incident
from p3log.settings import OptionError
from p3log.sim.config import SimConfig
from p3log.store.read import open_store
from tests.processes import run_p3log, start_p3log_server
from tests.replay.test_junit import read_report

SCRIPT = Path(__file__).with_name("incident.toml")
TIME_SCALE = 0.05
# Generous: a loaded 2-core machine deschedules a process for tens of milliseconds;
# the exact figures belong in bench/replay.py.
LATE_S = 1.0
EARLY_S = 0.002


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the incident, recorded through the tap."""
    root = tmp_path_factory.mktemp("incident") / "store"
    sim = SimConfig.from_files(scenario="default", seed=1, time_scale=TIME_SCALE)
    with open_log(root) as log:
        results = trio.run(lambda: run_through_tap(log, load_script(SCRIPT), sim))
    assert all(result.as_expected for result in results), results
    return root


@pytest.fixture
def store(recorded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(recorded, copy)
    return copy


def sessions_of(store: Path) -> list[str]:
    """The recorded connections, in the order they opened."""
    con = open_store(store)
    try:
        rows = con.execute(
            "SELECT session_id FROM events GROUP BY session_id "
            "HAVING bool_or(sender = 'client') ORDER BY min(seq)"
        ).fetchall()
    finally:
        con.close()
    return [str(row[0]) for row in rows]


def fingerprint(root: Path) -> tuple[dict[str, str], list[tuple[object, ...]]]:
    """The store's record (journal, segments, metadata: every file but the locks and
    the DuckDB file, which any reader's open rewrites) and its events as indexed."""
    files = {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix != ".lock" and path.name != "index.duckdb"
    }
    con = open_store(root)
    try:
        events = con.execute("SELECT seq, session_id, kind, hash FROM events ORDER BY seq")
        return files, events.fetchall()
    finally:
        con.close()


# --- the incident ------------------------------------------------------------------


def test_the_recorded_incident_is_three_connections_in_their_relation(store: Path) -> None:
    main, busy, reconnect = sessions_of(store)
    incident = load_incident(store, SessionSelection((reconnect, busy[:8], main)))
    assert incident.session_ids == (main, busy, reconnect)  # ordered by opening
    offsets = [connection.offset_s for connection in incident.connections]
    assert offsets[0] == 0 and offsets[0] < offsets[1] < offsets[2]
    # The busy till opened while the main connection ran; the reconnect after both ended.
    assert [connection.after for connection in incident.connections] == [(), (), (0, 1)]


def test_a_window_selects_the_connections_opened_in_it(store: Path) -> None:
    main, busy, reconnect = sessions_of(store)
    con = open_store(store)
    try:
        opened = dict(
            con.execute(
                "SELECT session_id, strftime(min(recorded_at), '%Y-%m-%dT%H:%M:%S.%fZ') "
                "FROM events GROUP BY session_id"
            ).fetchall()
        )
    finally:
        con.close()
    day = opened[main][:10]
    assert load_incident(store, SessionSelection.from_options(since=day)).session_ids == (
        main,
        busy,
        reconnect,
    )
    later = SessionSelection.from_options(since=opened[busy], until=opened[reconnect])
    assert load_incident(store, later).session_ids == (busy, reconnect)
    up_to = SessionSelection.from_options(until=opened[main])  # --until is inclusive
    assert load_incident(store, up_to).session_ids == (main,)


def test_a_live_connection_replays_the_earliest_untaken_recording_its_login_matches() -> None:
    logins = {0: b"login-a", 1: b"login-b", 2: b"login-b"}

    def expects(index: int, data: bytes) -> bool:
        return logins[index] == data

    assert assign([0, 1, 2], b"login-b", expects) == 1
    assert assign([0, 2], b"login-b", expects) == 2
    assert assign([0, 2], b"something else", expects) == 0  # it will diverge, and say so
    assert assign([2], None, expects) == 2  # closed before a word: the next in order


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"session": "a", "sessions": "b,c"}, "SESSION and --sessions: choose one way"),
        ({"sessions": "a", "since": "2026-01-01"}, "--sessions and --since/--until: choose"),
        ({}, "missing SESSION (or --sessions ID,ID…, or --since/--until)"),
        ({"sessions": "a,,b"}, "--sessions 'a,,b': expected ID,ID,… (no empty ids)"),
        ({"since": "yesterday"}, "--since 'yesterday' is not an ISO 8601 date or datetime"),
    ],
)
def test_selections_that_cannot_be_made(options: dict[str, str], message: str) -> None:
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SessionSelection.from_options(**options)


# --- serve -------------------------------------------------------------------------


async def test_serving_the_incident_to_the_pos_reproduces_every_connection(store: Path) -> None:
    main, busy, reconnect = sessions_of(store)
    config = ServeConfig(store, selection=SessionSelection((main, busy, reconnect)))
    found: list[IncidentResult] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: _serve(config, task_status, found))
        results = await run_script(
            load_script(SCRIPT), f"ws://127.0.0.1:{port}/", secret=DEMO_MERCHANT_SECRET
        )
    (result,) = found
    assert all(step.as_expected for step in results), results  # the POS saw the incident
    assert result.passed
    connections = result.connections
    assert [c.replay_of for c in connections] == [main, busy, reconnect]
    for connection in connections:
        original = load_session(store, connection.replay_of)
        replay = load_session(store, connection.session_id)
        assert diff_sessions(original, replay, dialect=DEFAULT_DIALECT).identical
    # The recorded relation between connections: order, and no start before its offset.
    started = [c.started_offset_s for c in connections]
    assert started == sorted(started)
    for connection in connections:
        assert connection.started_offset_s >= connection.recorded_offset_s - EARLY_S
        assert connection.started_offset_s <= connection.recorded_offset_s + LATE_S


async def _serve(
    config: ServeConfig, task_status: trio.TaskStatus[int], found: list[IncidentResult]
) -> None:
    found.append(await serve_incident(config, task_status=task_status))


async def test_a_pos_connecting_early_is_answered_from_its_offset_on(store: Path) -> None:
    """Three connections opened at once: each is matched in order, and the later
    recordings' server messages wait for their offsets."""
    main, busy, _ = sessions_of(store)
    recorded = load_session(store, main)
    login = next(m for m in recorded.messages if m.sender == "client").raw
    config = ServeConfig(store, selection=SessionSelection((main, busy)), pacing=Pacing("speed"))
    incident = load_incident(store, config.selected)
    arrivals: dict[int, float] = {}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: _serve(config, task_status, []))
        t0 = trio.current_time()

        async def pos(index: int) -> None:
            async with open_channel(f"ws://127.0.0.1:{port}/", DEFAULT_DIALECT) as channel:
                await channel.send(login)
                await channel.receive()
                arrivals[index] = trio.current_time() - t0

        async with trio.open_nursery() as clients:
            clients.start_soon(pos, 0)
            await trio.sleep(0.05)  # the first connection is the first to connect
            clients.start_soon(pos, 1)
        nursery.cancel_scope.cancel()
    assert arrivals[1] >= incident.connections[1].offset_s - EARLY_S
    assert arrivals[0] < arrivals[1]


def test_the_serve_command_replays_a_window_to_the_pos_process(store: Path, tmp_path: Path) -> None:
    main, busy, reconnect = sessions_of(store)
    report = tmp_path / "report.xml"
    server = start_p3log_server(
        "replay",
        "serve",
        "--store",
        str(store),
        "--since",
        "2000-01-01",
        "--listen",
        "127.0.0.1:0",
        "--junit",
        str(report),
    )
    try:
        assert f"serving 3 sessions: {main}, {busy}, {reconnect}" in server.banner
        pos = run_p3log("pos", "--url", server.url, "--script", SCRIPT)
        assert pos.returncode == 0, pos.stdout + pos.stderr
        code = server.process.wait(timeout=60)
        out, err = server.process.communicate()
    finally:
        server.kill()
    assert code == 0 and err == ""
    lines = out.splitlines()
    for session_id in (main, busy, reconnect):
        assert any(f"replayed session {session_id} as replay-" in line for line in lines)
    assert lines[-1] == "p3log replay: 3 connections: 3 passed, 0 failed; 0 divergences"
    # One JUnit test case per connection, each passed, in recorded order.
    root = read_report(report)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "0", "0")
    cases = list(root.iter("testcase"))
    assert [case.get("name") for case in cases] == [main, busy, reconnect]
    assert all(list(case) == [] for case in cases)
    offsets = [
        float(p.get("value") or "nan")
        for p in root.iter("property")
        if p.get("name") == "recorded_offset_s"
    ]
    assert offsets == sorted(offsets) and offsets[0] == 0


# --- drive -------------------------------------------------------------------------


def test_driving_the_incident_against_the_simulator_reproduces_every_outcome(
    store: Path,
) -> None:
    main, busy, reconnect = sessions_of(store)
    sim = start_p3log_server(
        "sim", "--listen", "127.0.0.1:0", "--seed", "1", "--time-scale", str(TIME_SCALE)
    )
    try:
        drive = run_p3log(
            "replay",
            "drive",
            "--store",
            store,
            "--sessions",
            f"{main},{busy},{reconnect}",
            "--url",
            sim.url,
            env={"P3LOG_MERCHANT_SECRET": DEMO_MERCHANT_SECRET},
        )
    finally:
        sim.kill()
    assert drive.returncode == 0, drive.stdout + drive.stderr
    assert drive.stderr == ""  # no terminal: no progress line
    lines = drive.stdout.splitlines()
    for session_id in (main, busy, reconnect):
        assert any(
            f"drove session {session_id} against" in line and ": complete;" in line
            for line in lines
        )
    assert any(line.startswith("p3log replay: 3 connections: 3 passed, 0 failed") for line in lines)
    con = open_store(store)
    try:
        (summary,) = con.execute(
            "SELECT payload FROM events WHERE kind = 'replay_summary'"
        ).fetchall()
        runs = con.execute(
            "SELECT payload->>'replay_of' FROM events WHERE kind = 'replay_started' ORDER BY seq"
        ).fetchall()
    finally:
        con.close()
    assert sorted(row[0] for row in runs) == sorted([main, busy, reconnect])
    details = json.loads(summary[0])
    assert [c["replay_of"] for c in details["connections"]] == [main, busy, reconnect]
    assert all(c["passed"] and c["divergences"] == 0 for c in details["connections"])
    assert details["messages"] > 0 and details["messages_per_s"] > 0
    steps = {(item["step"], item["msg_type"]) for item in details["latencies"]}
    assert ("response", "LOGIN_MERCHANT_REQUEST") in steps
    assert all(
        set(item["replayed"]) == {"p50_ms", "p95_ms", "p99_ms"}
        for item in details["latencies"]
        if item["replayed"]
    )


# --- bad selections ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (("--sessions", "{main},nope"), "p3log: the store has no session 'nope' (it has: "),
        (
            ("--since", "2001-01-01", "--until", "2001-01-02"),
            "p3log: the store has no recorded connection opened "
            "from 2001-01-01 00:00:00 UTC before 2001-01-03 00:00:00 UTC",
        ),
        (
            ("{main}", "--sessions", "{main}"),
            "p3log: SESSION and --sessions: choose one way of selecting sessions",
        ),
    ],
)
@pytest.mark.parametrize("command", ["serve", "drive"])
def test_a_bad_selection_is_one_line_exit_2_and_the_store_unchanged(
    store: Path, command: str, selection: tuple[str, ...], message: str
) -> None:
    main = sessions_of(store)[0]
    before = fingerprint(store)
    where = ("--listen", "127.0.0.1:0") if command == "serve" else ("--url", "ws://127.0.0.1:9/")
    args = [part.format(main=main) for part in selection]
    found = run_p3log(
        "replay", command, "--store", store, *args, *where, env={"P3LOG_MERCHANT_SECRET": "s"}
    )
    assert found.returncode == 2 and found.stdout == ""
    (line,) = found.stderr.splitlines()
    assert line.startswith(message)
    assert fingerprint(store) == before


def test_an_incident_of_one_is_the_session(store: Path) -> None:
    main = sessions_of(store)[0]
    one = Incident.of(load_session(store, main))
    assert one.session_ids == (main,) and one.describe() == f"session {main}"
    with pytest.raises(ReplayError, match=r"names session .* twice"):
        load_incident(store, SessionSelection((main, main[:6])))


def test_a_connection_starts_at_its_offset_divided_by_the_speed(store: Path) -> None:
    incident = load_incident(store, SessionSelection.from_options(since="2000-01-01"))
    offset = incident.connections[2].offset_s
    assert incident.start_at(2, 100.0, Pacing.at_speed(1.0)) == 100.0 + offset
    assert incident.start_at(2, 100.0, Pacing.at_speed(4.0)) == 100.0 + offset / 4
    assert incident.start_at(2, 100.0, Pacing("asap")) == 100.0  # order is kept by `after`


def test_drive_shows_a_live_progress_line_on_a_terminal(store: Path) -> None:
    main, busy, reconnect = sessions_of(store)
    sim = start_p3log_server(
        "sim", "--listen", "127.0.0.1:0", "--seed", "1", "--time-scale", str(TIME_SCALE)
    )
    controller, terminal = pty.openpty()
    try:
        argv = ["replay", "drive", "--store", str(store), "--since", "2000-01-01"]
        drive = subprocess.run(
            [sys.executable, "-m", "p3log", *argv, "--url", sim.url],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
            env={**os.environ, "P3LOG_MERCHANT_SECRET": DEMO_MERCHANT_SECRET},
        )
        os.close(terminal)
        shown = b""
        while select.select([controller], [], [], 0)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
        sim.kill()
    assert drive.returncode == 0, drive.stdout
    incident = load_incident(store, SessionSelection((main, busy, reconnect)))
    pos = sum(len(c.recording.pos_messages) for c in incident.connections)
    server = sum(len(c.recording.server_messages) for c in incident.connections)
    # Rewritten in place (carriage return, erase line) while it runs, ended by a newline.
    *during, last = shown.decode().split("\r\x1b[K")[1:]
    assert during and all(" connections open, " in line for line in during)
    assert last == (
        f"0 connections open, 3/3 ended, {pos} messages sent, {server} received, 0 divergences\r\n"
    )
