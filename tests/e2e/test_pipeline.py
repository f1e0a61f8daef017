"""The whole recording loop as a user runs it: sim, tap and POS as real processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from p3log.store.read import open_store
from p3log.store.verify import verify_store
from tests.processes import ServerProcess, start_p3log_server

ROOT = Path(__file__).parents[2]


@contextmanager
def serving(*argv: str) -> Iterator[ServerProcess]:
    """A `p3log` server process for the block; it must stop cleanly on SIGINT."""
    server = start_p3log_server(*argv)
    try:
        yield server
    finally:
        assert server.stop(timeout=60) == 0


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_a_scripted_pos_through_the_tap_is_recorded_completely(
    tmp_path: Path, transport: str
) -> None:
    store = tmp_path / "store"
    sim_args = ("--listen", "127.0.0.1:0", "--transport", transport, "--time-scale", "0.01")
    with serving("sim", *sim_args, "--seed", "7") as sim:
        tap_args = ("--listen", "127.0.0.1:0", "--upstream", sim.url, "--store", str(store))
        with serving("tap", *tap_args) as tap:
            url = tap.url
            pos = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "p3log",
                    "pos",
                    "--url",
                    url,
                    "--script",
                    str(ROOT / "fixtures" / "pos" / "demo.toml"),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert pos.returncode == 0, pos.stdout + pos.stderr
    report = verify_store(store)
    assert report.ok, report.problem
    con = open_store(store)
    try:
        kinds = dict(con.execute("SELECT kind, count(*) FROM events GROUP BY ALL").fetchall())
        requests = con.execute(
            "SELECT count(*) FROM events WHERE sender = 'client' AND msg_type LIKE '%_REQUEST'"
        ).fetchall()[0][0]
        unanswered = con.execute(
            """
            SELECT q.msg_type,
                   q.payload->>'$.executeTransactionRequest.transactionParameters.amount'
            FROM events q
            WHERE q.sender = 'client' AND q.msg_type LIKE '%_REQUEST' AND NOT EXISTS (
                SELECT 1 FROM events r WHERE r.session_id = q.session_id AND r.tag = q.tag
                  AND r.sender = 'server' AND r.msg_type LIKE '%_RESPONSE')
            """
        ).fetchall()
        secrets = con.execute(
            "SELECT payload->>'$.loginMerchantRequest.merchantSecret' FROM events "
            "WHERE msg_type = 'LOGIN_MERCHANT_REQUEST'"
        ).fetchall()
    finally:
        con.close()
    assert kinds["connection_opened"] == kinds["connection_closed"] >= 1  # all closed
    assert kinds.get("malformed", 0) == 0
    assert requests > 15
    # Every request was answered, and every answer recorded, but for the execute during
    # which the simulator dropped the connection (the script's transaction 14).
    assert unanswered == [("EXECUTE_TRANSACTION_REQUEST", "90.05")]
    assert secrets and all(s[0].startswith("[REDACTED merchantSecret") for s in secrets)
