"""`p3log replay serve` as a process: options, exit codes, one-line problems.

`run_serve_command` runs trio in the main thread (it installs signal handlers); the
POS under test runs in a thread of its own, told the port by the banner.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from p3log.pos.runner import run_script
from p3log.pos.script import load_script
from p3log.replay.command import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    OptionError,
    build_serve_config,
    run_serve_command,
)
from p3log.replay.plan import Pacing
from p3log.settings import SettingsError
from tests.replay.conftest import FixtureStores
from tests.replay.sessions import FIXTURES
from tests.replay.test_serve import abort_instead_of_signing


def config_for(store: Path, session: str = "s", **options: Any) -> Any:
    return build_serve_config(store=store, session=session, listen="127.0.0.1:0", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": 2.0, "asap": True}, "--speed and --asap: choose one way of pacing"),
        ({"asap": True, "reactive": True}, "--asap and --reactive: choose one way of pacing"),
        ({"speed": 0.0}, "--speed: speed must be a positive number, not 0.0"),
        ({"on_unexpected": "shrug"}, "--on-unexpected 'shrug': expected fail, skip or error"),
        ({"ignore_paths": ["a..b"]}, "--ignore-path/--compare-path: 'a..b' is not a JSON path"),
        ({"compare_paths": ["status"]}, "--ignore-path/--compare-path: status is not a volatile"),
    ],
)
def test_options_that_cannot_be_served(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        config_for(tmp_path, **options)


def test_options_become_a_config(tmp_path: Path) -> None:
    assert config_for(tmp_path).pacing == Pacing("speed", 1.0)
    config = config_for(
        tmp_path,
        speed=10.0,
        on_unexpected="skip",
        fresh_ids=True,
        ignore_paths=["**.information"],
        compare_paths=["**.referencedTransactionIdentifier"],
        transport="tcp",
    )
    assert (config.host, config.port, config.transport) == ("127.0.0.1", 0, "tcp")
    assert config.pacing == Pacing.at_speed(10.0) and config.fresh_ids
    assert config.volatile is not None
    paths = [str(path) for path in config.volatile.paths]
    assert "**.information" in paths and "**.referencedTransactionIdentifier" not in paths
    assert config_for(tmp_path, reactive=True).pacing == Pacing("reactive")
    with pytest.raises(OptionError, match="--listen 'nowhere' is not HOST:PORT"):
        build_serve_config(store=tmp_path, session="s", listen="nowhere")
    with pytest.raises(SettingsError):
        config_for(tmp_path, dialect_path=tmp_path / "missing.toml")


class Lines:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.ports: queue.Queue[str] = queue.Queue()

    def announce(self, line: str) -> None:
        self.out.append(line)
        found = re.search(r"listening on (\S+)", line)
        if found:
            self.ports.put(found.group(1).rstrip(","))


def run_with_pos(config: Any, pos: Any, junit: Path | None = None) -> tuple[int, Lines, list[Any]]:
    """Run the command here, and `pos(url)` in a thread once it listens."""
    lines = Lines()
    outcome: list[Any] = []

    def pos_thread() -> None:
        url = lines.ports.get(timeout=10)
        outcome.append(trio.run(pos, url))

    thread = threading.Thread(target=pos_thread)
    thread.start()
    try:
        code = run_serve_command(
            config, announce=lines.announce, complain=lines.err.append, junit=junit
        )
    finally:
        thread.join(timeout=10)
    return code, lines, outcome


def test_a_complete_replay_exits_0(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    session_id = fixture_stores.copy("decline", tmp_path / "store")
    config = config_for(tmp_path / "store", session_id[:8], asap=True)
    script = load_script(FIXTURES / "pos" / "decline.toml")

    async def pos(url: str) -> Any:
        return await run_script(script, url, secret="s")

    code, lines, (results,) = run_with_pos(config, pos)
    assert code == 0 and lines.err == []
    assert results[0].outcome == "DECLINED"
    assert re.fullmatch(
        rf"p3log replay: listening on ws://127\.0\.0\.1:\d+/, serving session {session_id} "
        r"\(2 POS and 7 server messages; asap; on unexpected: fail\)",
        lines.out[0],
    )
    assert re.fullmatch(
        rf"p3log replay: replayed session {session_id} as replay-\w+: complete; "
        r"2/2 POS messages matched, 7/7 server messages sent, 0 divergences",
        lines.out[1],
    )


def test_a_divergence_exits_1_with_one_line(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    session_id = fixture_stores.copy("signature", tmp_path / "store")
    config = config_for(tmp_path / "store", session_id, asap=True)
    code, lines, _ = run_with_pos(config, abort_instead_of_signing)
    assert code == EXIT_DIVERGED
    (line,) = lines.err
    assert re.fullmatch(
        r"p3log replay: diverged: the POS sent ABORT_TRANSACTION_REQUEST \(tag [\w-]+\), "
        r"but the recording expected SUBMIT_SIGNATURE_REQUEST \(seq 12\)",
        line,
    )


def test_no_such_session_is_bad_input(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    fixture_stores.copy("simple", tmp_path / "store")
    lines = Lines()
    code = run_serve_command(
        config_for(tmp_path / "store", "nope"), announce=lines.announce, complain=lines.err.append
    )
    assert code == EXIT_BAD_INPUT and lines.out == []
    (line,) = lines.err
    assert line.startswith("p3log: the store has no session 'nope' (it has: ")


def test_no_store_is_bad_input(tmp_path: Path) -> None:
    lines = Lines()
    code = run_serve_command(
        config_for(tmp_path / "none"), announce=lines.announce, complain=lines.err.append
    )
    assert code == EXIT_BAD_INPUT and len(lines.err) == 1 and lines.err[0].startswith("p3log: ")


def test_a_port_in_use_is_bad_input(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    session_id = fixture_stores.copy("simple", tmp_path / "store")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = build_serve_config(
            store=tmp_path / "store", session=session_id, listen=f"127.0.0.1:{port}"
        )
        lines = Lines()
        code = run_serve_command(config, announce=lines.announce, complain=lines.err.append)
    assert code == EXIT_BAD_INPUT
    assert lines.err == [f"p3log: cannot listen on 127.0.0.1:{port}: Address already in use"]
