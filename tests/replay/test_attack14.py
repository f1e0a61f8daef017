"""Attacks on issue 14 (whole incidents, redaction before matching, --junit)."""

from __future__ import annotations

import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import trio

from p3log.net.channel import ChannelClosed, open_channel
from p3log.replay.serve import ServeConfig, serve_replay
from p3log.store.read import open_store
from tests.replay.test_redacted_fields import (
    CARD,
    REFERENCE,
    SECRET,
    conversation,
    record_session,
)

CLEAR = ("4111111111111111", CARD, SECRET)


async def send_raw(config: ServeConfig, frames: list[bytes]) -> tuple[Any, str]:
    """Serve `config`; send `frames` as the POS; return the result and the close reason."""
    results: list[Any] = []
    reason = ""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[int]) -> None:
                results.append(await serve_replay(config, task_status=task_status))

            port = await nursery.start(serve)
            async with open_channel(f"ws://127.0.0.1:{port}/") as channel:
                try:
                    for frame in frames:
                        await channel.send(frame)
                        if frame is frames[0]:
                            await channel.receive()
                    while True:
                        await channel.receive()
                except ChannelClosed as closed:
                    reason = closed.reason
    return results[0], reason


def everything_in(store: Path) -> str:
    con = open_store(store)
    try:
        rows = con.execute("SELECT payload, raw FROM events").fetchall()
    finally:
        con.close()
    return "".join(str(r) for r in rows)


def _serve_process(store: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "p3log", "replay", "serve", "--store", str(store)]
    return subprocess.Popen(
        [*argv, "incident", "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_listening(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening on" in line, line
    return line


def test_a_gate_interrupted_before_the_pos_came_does_not_exit_0(tmp_path: Path) -> None:
    """The CI gate of the README (`serve --junit … & REPLAY=$!; <build's test>; wait
    $REPLAY`) fails a build whose test never reached the replay: when CI stops the
    serve (SIGINT/SIGTERM) before any POS connected, the report says `errors="1"`
    (not_started) but the exit code is 0, so a gate reading the exit code passes it.
    docs/replay.md's own table says exit 1 for a connection that 'never came'."""
    store = tmp_path / "store"
    record_session(store, conversation(("r-1", "r-2"), CARD, SECRET, REFERENCE))
    report = tmp_path / "report.xml"
    serve = _serve_process(store, "--junit", str(report))
    try:
        _wait_listening(serve)
        serve.send_signal(signal.SIGINT)
        out, _ = serve.communicate(timeout=30)
    finally:
        serve.kill()
    root = ET.parse(report).getroot()
    assert root.get("errors") == "1"  # the report: the connection never came
    assert serve.returncode != 0, out  # the exit code: passed


def test_an_unwritable_report_is_refused_before_the_replay_listens(tmp_path: Path) -> None:
    """`--junit /no/such/dir/report.xml` is bad input (exit 2, store unchanged), but it
    is found only when the report is written, after the whole incident was served and
    recorded into the store: a gate plays the build's whole test for nothing."""
    store = tmp_path / "store"
    record_session(store, conversation(("r-1", "r-2"), CARD, SECRET, REFERENCE))
    serve = _serve_process(store, "--junit", str(tmp_path / "no" / "such" / "report.xml"))
    try:
        out, _ = serve.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        serve.send_signal(signal.SIGINT)
        out, _ = serve.communicate(timeout=30)
    finally:
        serve.kill()
    assert "listening on" not in out, out
    assert serve.returncode == 2
