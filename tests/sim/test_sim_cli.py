"""`p3log sim` as a user runs it: a real process, a real port, SIGINT to stop."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import pytest
import trio

from tests.sim.peer import Peer

pytestmark = pytest.mark.slow

LISTENING = re.compile(
    r"p3log sim: listening on ((?:ws|tcp)://127\.0\.0\.1:(\d+)/?) \(scenario (\w+), seed (\d+)\)"
)


def p3log_sim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "p3log", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("transport", ["ws", "tcp"])
async def test_sim_serves_until_sigint(transport):
    process = p3log_sim(
        "--listen", "127.0.0.1:0", "--transport", transport, "--time-scale", "0", "--seed", "7"
    )
    try:
        with trio.fail_after(30):
            first_line = await trio.to_thread.run_sync(process.stdout.readline)
        found = LISTENING.fullmatch(first_line.strip())
        assert found, (first_line, process.stderr.read() if process.poll() is not None else "")
        url, port, scenario, seed = found.groups()
        assert int(port) > 0 and scenario == "default" and seed == "7"
        async with Peer.connect(url) as peer:
            messages = await peer.transact("t-1")
        assert messages[-1].type == "EXECUTE_TRANSACTION_RESPONSE"
        assert messages[-1].body.transaction.status == "APPROVED"
        process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            code = await trio.to_thread.run_sync(process.wait)
        assert code == 0, process.stderr.read()
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--scenario", "nope"], "no scenario named 'nope'"),
        (["--devices", "/no/such/devices.toml"], "cannot read devices file"),
        (["--dialect", "/no/such/dialect.toml"], "cannot read dialect file"),
        (["--listen", "nowhere"], "--listen"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected):
    result = subprocess.run(
        [sys.executable, "-m", "p3log", "sim", "--time-scale", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert result.stdout == ""


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "p3log", "sim", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"p3log: cannot listen on 127.0.0.1:{port}: ")
