"""Replay benchmark: how faithfully `replay serve` keeps the recorded pace, and how fast
it goes without one.

A synthetic recorded session of 10,000 messages (a login, then ~1,400 transactions:
updates, some signature actions, some aborts; server gaps of 1 to ~100 ms, POS think
times of 5 to ~150 ms, scaled so that the whole session lasts --duration seconds at
speed 1, 60 by default) is written into a temporary store and served by
`p3log replay serve` (`serve_replay` in a process of its own, as a user runs it) to a
simple POS in this process: a raw channel client that sends the recorded POS
messages, with fresh tags, as soon as it may: once every server message recorded
before it has arrived, and not before its recorded moment (the recorded think time
kept, divided by the speed, on an absolute schedule from the login). It stamps
every arrival with `trio.current_time()`.

Figures, per speed (1 and 10):

- gap error: for every server message, |actual gap - recorded gap / speed|, the gap
  running from the POS message it follows (as the POS sent it) to its arrival at the
  POS, so it includes both trips over loopback: p50, p99 and max (target p99 <= 2 ms);
- last-message lateness: the arrival of the last server message minus its place on
  the recorded timeline (login sent + recorded offset / speed): what lateness would
  have accumulated over the whole session (target <= 5 ms);

and with `--asap` (no waits on either side) the throughput in messages/s (both
directions, everything the replay records into the store included).

Then the load test: a recorded "day" of N connections (--connections, 10,50,200 by
default), each a till on a reader of its own logging in and making --sales sales,
recorded by the scripted POS against `p3log sim --time-scale 0` (concurrently, each
opening 5 ms after the one before), is played by `p3log replay drive --since … --asap
--on-unexpected continue` against a fresh `p3log sim --time-scale 0`, both in
processes of their own. Figures per N: the messages/s drive reports (POS messages
sent and server messages received, over the whole run), the drive process's CPU
(user + system, from wait4) per message, divergences, and the load average before
and after.

    python bench/replay.py [--duration 60] [--messages 10000] [--speeds 1,10]
                           [--connections 10,50,200] [--sales 5] [--skip-fidelity]

Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from p3log.net.channel import ChannelClosed, open_channel
from p3log.protocol import jsontext
from p3log.replay.recording import load_session
from p3log.store.event import Stamp
from p3log.store.log import EventLog

HERE = Path(__file__).resolve().parent
SESSION = "bench-session"
USB = "devices/usbReader"
MS = 1_000_000  # ns
GAP_P99_TARGET_MS = 2.0
LATENESS_TARGET_MS = 5.0


@attrs.frozen
class Recorded:
    sender: str  # "client" or "server"
    obj: dict[str, Any]
    at_ns: int


# --- the synthetic session -----------------------------------------------------------


def synthetic_session(count: int, duration_s: float, seed: int = 1) -> list[Recorded]:
    """`count` messages of a realistic conversation lasting `duration_s` seconds."""
    rng = random.Random(seed)
    items: list[tuple[str, dict[str, Any], float]] = []  # (sender, message, gap before it)

    def add(sender: str, obj: dict[str, Any], gap_ms: float) -> None:
        items.append((sender, obj, gap_ms))

    def server_gap() -> float:  # mostly a few ms, sometimes a slow step
        return rng.uniform(60, 110) if rng.random() < 0.03 else rng.uniform(1, 12)

    add("client", _msg("LOGIN_MERCHANT_REQUEST", "login", {"merchantSecret": "[REDACTED]"}), 5)
    add("server", _msg("LOGIN_MERCHANT_RESPONSE", "login", {"devices": []}, status="OK"), 2)
    number = 0
    while len(items) < count:
        remaining = count - len(items)
        number += 1
        tag = f"tx-{number}"
        kind = rng.random()
        plan: list[tuple[str, str, float]] = []  # (sender, what, gap) for this transaction
        updates = rng.randint(3, 6)
        plan.append(("client", "execute", rng.uniform(5, 40)))
        plan += [("server", "update", server_gap()) for _ in range(updates)]
        if kind < 0.10:  # a signature
            plan += [
                ("server", "action", server_gap()),
                ("client", "signature", rng.uniform(20, 150)),
                ("server", "signature_ok", rng.uniform(1, 4)),
                ("server", "update", server_gap()),
            ]
        elif kind < 0.15:  # an abort while abortable
            plan += [
                ("client", "abort", rng.uniform(3, 30)),
                ("server", "abort_ok", rng.uniform(1, 3)),
                ("server", "update", server_gap()),
            ]
        plan.append(("server", "response", server_gap()))
        if len(plan) > remaining or remaining - len(plan) == 1:  # fit the count exactly
            plan = [("client", "execute", 10.0)]
            plan += [("server", "update", server_gap()) for _ in range(remaining - 2)]
            plan.append(("server", "response", server_gap()))
        for sender, what, gap in plan:
            add(sender, _transaction_message(what, tag, number), gap)
    assert len(items) == count, len(items)
    scale = duration_s * 1000 / sum(gap for _, _, gap in items)
    at = 0.0
    found: list[Recorded] = []
    for sender, obj, gap in items:
        at += gap * scale
        found.append(Recorded(sender, obj, int(at * MS)))
    return found


def _msg(msg_type: str, tag: str, body: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    head, *rest = msg_type.lower().split("_")
    return {"type": msg_type, "tag": tag, **envelope, head + "".join(p.title() for p in rest): body}


def _transaction_message(what: str, tag: str, number: int) -> dict[str, Any]:
    txn = {"identifier": f"{number:032x}", "amount": 12, "currency": "EUR", "status": "PENDING"}
    ok = {"resource": USB, "status": "OK"}
    if what == "execute":
        params = {"amount": 12, "currency": "EUR", "type": "CHARGE", "autoCapture": True}
        return _msg(
            "EXECUTE_TRANSACTION_REQUEST", tag, {"transactionParameters": params}, resource=USB
        )
    if what == "update":
        body = {"state": "PROCESSING", "abortable": True, "transaction": txn}
        return _msg("EXECUTE_TRANSACTION_UPDATE", tag, body, **ok)
    if what == "action":
        return _msg(
            "EXECUTE_TRANSACTION_ACTION", tag, {"action": "SIGNATURE", "transaction": txn}, **ok
        )
    if what == "signature":
        return _msg(
            "SUBMIT_SIGNATURE_REQUEST", tag + "-s", {"signature": "iVBORw0KGgo="}, resource=USB
        )
    if what == "signature_ok":
        return _msg("SUBMIT_SIGNATURE_RESPONSE", tag + "-s", {}, **ok)
    if what == "abort":
        return _msg("ABORT_TRANSACTION_REQUEST", tag + "-a", {}, resource=USB)
    if what == "abort_ok":
        return _msg("ABORT_TRANSACTION_RESPONSE", tag + "-a", {}, **ok)
    assert what == "response"
    return _msg(
        "EXECUTE_TRANSACTION_RESPONSE", tag, {"transaction": {**txn, "status": "APPROVED"}}, **ok
    )


def write_store(root: Path, messages: list[Recorded]) -> None:
    base_us = 1_800_000_000_000_000
    with EventLog.open(root) as log:
        log.record_lifecycle(SESSION, "connection_opened", {"transport": "ws"}, Stamp(base_us, 0))
        for m in messages:
            stamp = Stamp(recorded_at_us=base_us + m.at_ns // 1000, mono_ns=m.at_ns)
            log.record_message(SESSION, m.sender, jsontext.dumps(m.obj).encode(), stamp)  # type: ignore[arg-type]


# --- the POS ---------------------------------------------------------------------------


@attrs.define
class Run:
    sent_at: list[float]  # per POS message
    arrived_at: list[float]  # per server message
    started: float = 0.0


async def pos(url: str, messages: list[Recorded], speed: float | None) -> Run:
    """Send the recorded POS messages (fresh tags) as soon as they may be sent; stamp
    every server message's arrival. `speed` None: no think times (asap)."""
    fresh: dict[str, str] = {}
    outgoing: list[tuple[bytes, int, int]] = []  # (bytes, server messages before, at_ns)
    before = 0
    for m in messages:
        if m.sender == "server":
            before += 1
            continue
        tag = m.obj["tag"]
        fresh.setdefault(tag, uuid.uuid4().hex)
        outgoing.append((jsontext.dumps({**m.obj, "tag": fresh[tag]}).encode(), before, m.at_ns))
    total_server = before
    run = Run(sent_at=[], arrived_at=[])
    progress = trio.Event()
    async with open_channel(url) as channel:

        async def receive() -> None:
            nonlocal progress
            try:
                while len(run.arrived_at) < total_server:
                    await channel.receive()
                    run.arrived_at.append(trio.current_time())
                    progress.set()
                    progress = trio.Event()
            except ChannelClosed:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            first_ns = outgoing[0][2]
            for data, needs, at_ns in outgoing:
                while len(run.arrived_at) < needs:
                    await progress.wait()
                if speed is not None and run.sent_at:
                    await trio.sleep_until(run.started + (at_ns - first_ns) / 1e9 / speed)
                now = trio.current_time()
                if not run.sent_at:
                    run.started = now
                run.sent_at.append(now)
                await channel.send(data)
    return run


# --- measuring -----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fidelity(
    messages: list[Recorded], pos_at: list[float], server_at: list[float], speed: float
) -> dict[str, float]:
    """Gap errors and the last message's lateness, from when each POS message went out
    (`pos_at`) and each server message came (`server_at`), in seconds."""
    errors: list[float] = []
    anchor: tuple[float, int] | None = None  # (live, recorded) time of the latest POS message
    pos_index = server_index = 0
    last_lateness = 0.0
    first_ns = next(m.at_ns for m in messages if m.sender == "client")
    started = pos_at[0]
    for m in messages:
        if m.sender == "client":
            anchor = (pos_at[pos_index], m.at_ns)
            pos_index += 1
            continue
        arrived = server_at[server_index]
        server_index += 1
        assert anchor is not None
        expected = (m.at_ns - anchor[1]) / 1e9 / speed
        errors.append(abs((arrived - anchor[0]) - expected) * 1000)
        last_lateness = (arrived - (started + (m.at_ns - first_ns) / 1e9 / speed)) * 1000
    return {
        "p50": percentile(errors, 0.50),
        "p99": percentile(errors, 0.99),
        "max": max(errors),
        "last": last_lateness,
        "seconds": server_at[-1] - started,
    }


def as_recorded(store: Path, replay_id: str) -> tuple[list[float], list[float]]:
    """When the replay received each POS message and sent each server message, as it
    recorded them into the store (monotonic clock, seconds)."""
    session = load_session(store, replay_id)
    pos_at = [m.at_ns / 1e9 for m in session.messages if m.sender == "client"]
    server_at = [m.at_ns / 1e9 for m in session.messages if m.sender == "server"]
    return pos_at, server_at


@contextmanager
def serving(store: Path, pacing: list[str], replays: list[str]) -> Iterator[str]:
    """`p3log replay serve` of the session on a free port; its URL while it runs. The
    run's session id is appended to `replays`."""
    argv = [sys.executable, "-m", "p3log", "replay", "serve", "--store", str(store)]
    argv += ["--session", SESSION, "--listen", "127.0.0.1:0", *pacing]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"listening on (ws://\S+/)", line)
    if found is None:
        proc.kill()
        raise SystemExit(f"p3log replay serve did not start: {line!r}")
    try:
        yield found.group(1)
        verdict = proc.stdout.readline().strip()
        if "complete" not in verdict:
            raise SystemExit(f"the replay did not complete: {verdict}")
        replay = re.search(r" as (replay-\w+)", verdict)
        assert replay is not None, verdict
        replays.append(replay.group(1))
    finally:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


async def round_trips(url: str, data: bytes, count: int, every: float) -> list[float]:
    """Round-trip times (ms) of `count` messages sent `every` seconds to an echo server."""
    found: list[float] = []
    async with open_channel(url) as channel:
        for _ in range(count):
            started = trio.current_time()
            await channel.send(data)
            await channel.receive()
            found.append((trio.current_time() - started) * 1000)
            await trio.sleep(every)
    return found


def loopback_floor(message: Recorded) -> list[float]:
    """Round trips through bench/echo_server.py, paced like a speed-1 replay: the part
    of the POS-side figures that is the link and the two processes, not the replay."""
    argv = [sys.executable, str(HERE / "echo_server.py")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    found = re.search(r"listening on (ws://\S+/)", proc.stdout.readline())
    try:
        assert found is not None
        data = jsontext.dumps(message.obj).encode()
        return trio.run(round_trips, found.group(1), data, 1000, 0.005)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(store: Path, messages: list[Recorded], speed: float | None) -> tuple[Run, str]:
    """Serve the session once to the POS; what the POS saw, and the run's session id."""
    pacing = ["--speed", str(speed)] if speed is not None else ["--asap"]
    replays: list[str] = []
    with serving(store, pacing, replays) as url:
        run = trio.run(pos, url, messages, speed)
    return run, replays[0]


# --- the load test --------------------------------------------------------------------

LOAD_MERCHANT = "bench-merchant"
LOAD_SECRET = "bench-secret"
# Every sale approved (no rule cycle shared between the connections); no waits.
SIM_ARGS = ("sim", "--listen", "127.0.0.1:0", "--time-scale", "0", "--scenario", "approve")
# The simulator draws each sale's card in the order the sales reach it, which
# concurrent connections change from run to run: the card is not what is measured.
CARD_PATHS = ("**.cardDetails", "**.paymentDetails", "**.merchantReceipt", "**.customerReceipt")


def devices_file(path: Path, connections: int) -> Path:
    """A simulator devices file with one reader per connection."""
    lines = [f'[[devices]]\nidentifier = "reader{i}"\n' for i in range(connections)]
    path.write_text("\n".join(lines))
    return path


def till_script(path: Path, reader: int, sales: int) -> Path:
    """A POS script: log in, `sales` approved sales on the till's own reader."""
    text = (
        f'[login]\nmerchant_identifier = "{LOAD_MERCHANT}"\nprovider_mode = "MOCK"\n'
        f'[device]\nresource = "devices/reader{reader}"\n'
    )
    text += "".join(f"[[transaction]]\namount = {10 + k}.00\n" for k in range(sales))
    path.write_text(text)
    return path


@contextmanager
def p3log_server(*argv: str) -> Iterator[str]:
    """A `p3log` server process (sim) and its URL, from its banner."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "p3log", *argv], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    found = re.search(r"listening on (ws://\S+/)", proc.stdout.readline())
    try:
        if found is None:
            raise SystemExit(f"p3log {argv[0]} did not start")
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def record_day(store: Path, tmp: Path, devices: Path, connections: int, sales: int) -> None:
    """`connections` tills, each on its reader, recorded concurrently by the POS runner."""
    from p3log.pos.runner import run_script
    from p3log.pos.script import load_script

    scripts = [
        load_script(till_script(tmp / f"till{i}.toml", i, sales)) for i in range(connections)
    ]

    async def main(url: str) -> None:
        with EventLog.open(store, create=True) as log:
            async with trio.open_nursery() as nursery:
                for script in scripts:
                    nursery.start_soon(
                        functools.partial(run_script, script, url, secret=LOAD_SECRET, log=log)
                    )
                    await trio.sleep(0.005)

    with p3log_server(*SIM_ARGS, "--devices", str(devices)) as url:
        trio.run(main, url)


def drive_day(store: Path, devices: Path) -> dict[str, float]:
    """Drive every recorded connection against a fresh simulator; the drive's figures."""
    with p3log_server(*SIM_ARGS, "--devices", str(devices)) as url:
        argv = [sys.executable, "-m", "p3log", "replay", "drive", "--store", str(store)]
        argv += ["--since", "2000-01-01", "--url", url, "--asap", "--on-unexpected", "continue"]
        argv += [arg for path in CARD_PATHS for arg in ("--ignore-path", path)]
        load_before = os.getloadavg()[0]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "P3LOG_MERCHANT_SECRET": LOAD_SECRET},
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0  # reaped by wait4
    found = re.search(
        r"(\d+) connections: (\d+) passed, (\d+) failed; (\d+) divergences?; "
        r"(\d+) messages in ([\d.]+) s \((\d+) messages/s\)",
        out,
    )
    if found is None:
        raise SystemExit(f"replay drive did not summarise: {out[-2000:]}")
    messages = int(found.group(5))
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "connections": int(found.group(1)),
        "passed": int(found.group(2)),
        "divergences": int(found.group(4)),
        "messages": messages,
        "seconds": float(found.group(6)),
        "rate": int(found.group(7)),
        "cpu_s": cpu,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def load_test(counts: list[int], sales: int) -> None:
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            devices = devices_file(tmp / "devices.toml", count)
            print(f"  recording {count} connections ...", file=sys.stderr)
            record_day(tmp / "store", tmp, devices, count, sales)
            print(f"  driving {count} connections ...", file=sys.stderr)
            rows.append(drive_day(tmp / "store", devices))
    print(
        f"\nreplay drive --asap against p3log sim --time-scale 0: a recorded day of N "
        f"connections ({sales} sales each), every one concurrently"
    )
    print(
        f"{'N':>5} {'messages':>9} {'run s':>7} {'messages/s':>11} {'process CPU s':>14} "
        f"{'CPU µs/msg':>11} {'passed':>7} {'divergences':>12} {'load before/after':>18}"
    )
    previous: dict[str, float] | None = None
    for r in rows:
        # The process's CPU includes its start (imports, the store, the sessions read);
        # per message is the CPU the extra messages cost over the row before.
        per = (
            (r["cpu_s"] - previous["cpu_s"]) / (r["messages"] - previous["messages"]) * 1e6
            if previous is not None and r["messages"] > previous["messages"]
            else float("nan")
        )
        print(
            f"{r['connections']:>5} {r['messages']:>9} {r['seconds']:>7.2f} {r['rate']:>11} "
            f"{r['cpu_s']:>14.2f} {per:>11.0f} {r['passed']:>7} "
            f"{r['divergences']:>12} {r['load_before']:>8.2f}/{r['load_after']:.2f}"
        )
        previous = r
    print("(CPU µs/msg: the drive process's extra CPU per extra message, row over row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=60.0, help="recorded seconds")
    parser.add_argument("--speeds", default="1,10")
    parser.add_argument("--connections", default="10,50,200")
    parser.add_argument("--sales", type=int, default=5)
    parser.add_argument("--skip-fidelity", action="store_true")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if not args.skip_fidelity:
        fidelity_figures(args)
    load_test([int(n) for n in args.connections.split(",")], args.sales)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def fidelity_figures(args: argparse.Namespace) -> None:
    messages = synthetic_session(args.messages, args.duration)
    server = sum(m.sender == "server" for m in messages)
    print(
        f"synthetic session: {len(messages)} messages ({len(messages) - server} POS, "
        f"{server} server), {messages[-1].at_ns / 1e9:.1f} s recorded",
        file=sys.stderr,
    )
    print("  loopback round trips through an echo server ...", file=sys.stderr)
    floor = loopback_floor(next(m for m in messages if m.sender == "server"))
    rows: list[tuple[str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        write_store(store, messages)
        for speed in (float(s) for s in args.speeds.split(",")):
            print(f"  serving at speed {speed:g} ...", file=sys.stderr)
            run, replay_id = one_run(store, messages, speed)
            rows.append(
                (f"speed {speed:g}", "POS", fidelity(messages, run.sent_at, run.arrived_at, speed))
            )
            rows.append(
                (
                    f"speed {speed:g}",
                    "store",
                    fidelity(messages, *as_recorded(store, replay_id), speed),
                )
            )
        print("  serving --asap ...", file=sys.stderr)
        run, _ = one_run(store, messages, None)
        asap_seconds = run.arrived_at[-1] - run.started

    print(
        f"\nreplay serve: timing fidelity over {len(messages)} messages "
        f"({len(messages) - server} POS, {server} server)"
    )
    print(
        f"{'pacing':<9} {'seen at':<6} {'run s':>6} {'gap error p50':>14} {'p99':>9} "
        f"{'max':>9} {'last late':>10}   p99 <= {GAP_P99_TARGET_MS:g} ms  "
        f"last <= {LATENESS_TARGET_MS:g} ms"
    )
    for label, where, f in rows:
        p99_ok = "met" if f["p99"] <= GAP_P99_TARGET_MS else "NOT met"
        late_ok = "met" if f["last"] <= LATENESS_TARGET_MS else "NOT met"
        print(
            f"{label:<9} {where:<6} {f['seconds']:>6.1f} {f['p50']:>11.3f} ms "
            f"{f['p99']:>6.3f} ms {f['max']:>6.2f} ms {f['last']:>7.3f} ms   "
            f"{p99_ok:<14} {late_ok}"
        )
    print(
        "(POS: as the POS sent and received them, both loopback trips included; "
        "store: as the replay recorded them)"
    )
    print(
        f"loopback round trip through an echo server, the floor under the POS-side figures: "
        f"p50 {percentile(floor, 0.5):.3f} ms, p99 {percentile(floor, 0.99):.3f} ms"
    )
    print(
        f"--asap: {len(messages)} messages in {asap_seconds:.2f} s = "
        f"{len(messages) / asap_seconds:,.0f} messages/s (recorded into the store as they go)"
    )


if __name__ == "__main__":
    main()
