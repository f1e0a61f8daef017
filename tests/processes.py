"""`p3log` servers (sim, tap) as real processes, found by the port in their banner."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

# Both `p3log sim` and `p3log tap` announce `… listening on SCHEME://HOST:PORT…` first.
_LISTENING = re.compile(r"listening on (\w+)://[^/\s]+:(\d+)")


@attrs.define
class ServerProcess:
    process: subprocess.Popen[str]
    scheme: str
    port: int
    banner: str

    @property
    def url(self) -> str:
        """Where to connect: `ws://127.0.0.1:PORT/` or `tcp://127.0.0.1:PORT`."""
        tail = "/" if self.scheme in ("ws", "wss") else ""
        return f"{self.scheme}://127.0.0.1:{self.port}{tail}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def start_p3log_server(*argv: str, preexec_fn: Callable[[], None] | None = None) -> ServerProcess:
    """Run `python -m p3log ARGV…` and wait for its banner line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "p3log", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        preexec_fn=preexec_fn,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    found = _LISTENING.search(banner)
    if found is None:
        process.kill()
        stderr = process.stderr.read() if process.stderr else ""
        raise AssertionError(f"p3log {argv[0]} did not start: {banner!r} {stderr}")
    return ServerProcess(process, found.group(1), int(found.group(2)), banner)


def run_p3log(
    *args: str | Path, env: Mapping[str, str] = {}, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    """A real `p3log` process run to its end (stdout a pipe); `env` adds to the environment.
    With `file_size_limit` (RLIMIT_FSIZE), every write past that size fails with EFBIG,
    as a full disk fails it with ENOSPC."""

    def limit_file_size() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "p3log", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        preexec_fn=limit_file_size,
    )
