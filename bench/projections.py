"""Projection benchmark (issue 5): rebuild and follow a store of a million transactions.

The store is generated first, through the real write path (`EventLog.record_message`
and `record_lifecycle` with explicit `Stamp`s: redaction, hash chain, journal, DuckDB
index; no projections following). Running the simulator over sockets for a million
transactions would take hours, so the sessions are replayed from the recorded fixtures
(fixtures/sessions/*.jsonl): each flow (a contactless approval, a chip-and-PIN one, a
signature, a decline, an abort, a refund, a server error, a dropped connection, a busy
reader, ...) is the exact message sequence of a recorded transaction, played again with
fresh tags, transaction identifiers and session ids, its recorded timing brought back
to real time (the fixtures run the simulator at 1/100) with some jitter. Several POS
connections (`--lanes`) run transactions side by side, mostly approvals, in the mix of
`MIX` below (the default scenario's cycle, plus the rarer flows); each connection logs
in, runs a few hundred transactions and closes, and a dropped one reconnects.

Then, each in its own process (so peak RSS is the phase's own):
  - plain scan: `SELECT count(*), sum(length(payload)) FROM events` (best of 3), the
    floor for anything that reads every event;
  - full rebuild: `rebuild_projections(root)`, as `p3log rebuild` runs it; its ratio
    to the plain scan, and the row counts it produced;
  - fold alone: `Projector.feed` over the first `--fold-events` events (default 2M),
    read into memory as `Observed` beforehand, with `take_changes()` every 4096 events
    (the index writer's batch);
  - live writer: the same events inserted 4096 at a time into a fresh index, with
    `ProjectionStore.follow` after each batch, as the tap's index writer calls it
    (only `follow` is timed; its rate over the first and the last tenth shows whether
    it slows down as the tables grow).

The table gives each phase's events, seconds, events/s, peak RSS and the 1-minute
load average as it started (figures from a busy machine are not comparable), then
the ratio, the targets of issue 5, the rows, and the store's size on disk.

    python bench/projections.py [--transactions N] [--store DIR [--keep]]
    python bench/projections.py --rebuild-vs OLD_CHECKOUT --rebuild-store DIR/store ...

The second form (issue 13) only compares rebuilds: for each store (kept from the
first form), `rebuild_projections` of OLD_CHECKOUT's p3log (e.g. a `git worktree` of
the commit before) and of this one, in one process and over worker processes, each
in its own interpreter over a fresh copy of the store, one after the other: events/s,
CPU seconds of the process and of its workers, the rate over the first and the last
tenth, and the load average (`measure`, `copy_store`: for a common harness).

`--store DIR` generates into DIR (default: a temporary directory) and removes the store
afterwards unless `--keep`; with `--keep`, a store generated there before is reused,
so the phases can be measured again without generating it anew (a million
transactions, about 8M events, take some 20 minutes to generate on 2 CPUs and about
20 GB on disk). Figures, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import heapq
import itertools
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Generator, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import attrs
import orjson

from p3log.projections.fold import Projector
from p3log.projections.observed import Observed, observed_query
from p3log.projections.opening import rebuild_projections
from p3log.projections.store import ProjectionStore
from p3log.protocol.dialect import DEFAULT_DIALECT
from p3log.protocol.model import MessageType
from p3log.store.event import SENDERS, Sender, Stamp
from p3log.store.index import (
    WRITER_CHECKPOINT_THRESHOLD,
    WRITER_THREADS,
    connect,
    create_schema,
    query_scalar,
)
from p3log.store.indexer import INDEX_BATCH_LINES
from p3log.store.log import EventLog

SESSIONS = Path(__file__).resolve().parent.parent / "fixtures" / "sessions"
# fixtures/record.py runs the simulator at 1/100 of real time.
TIME_SCALE = 100
# The flows, by the share of all flows (percent) each takes: the default scenario's
# cycle (three approvals, a signature, a decline in five), plus the flows a real
# day has a few of. Each is (fixture, which execute of its first session it starts
# at, share); a flow runs to the next execute of that session or to its close.
MIX: dict[str, tuple[str, int, float]] = {
    "contactless approval": ("simple", 0, 38),
    "chip-and-PIN approval": ("simple", 1, 18),
    "signature": ("signature", 0, 12),
    "signature on receipt": ("signature", 1, 5),
    "decline": ("decline", 0, 15),
    "sale and refund (amend)": ("amend", 0, 4),
    "abort in the window": ("abort", 0, 3),
    "abort refused, then signature": ("abort", 1, 1),
    "abort during the signature action": ("abort_during_action", 0, 1),
    "server error": ("server_error", 0, 1),
    "dropped connection": ("dropped_connection", 0, 1),
    "busy reader (a second POS)": ("busy_device", 0, 1),
}
START_US = 1_767_600_000_000_000  # 2026-01-05 08:00 UTC
MONO_START_NS = 10**12
SECOND_US = 1_000_000
THINK_US = (5 * SECOND_US, 60 * SECOND_US)  # between two transactions on one POS
RECONNECT_US = (2 * SECOND_US, 10 * SECOND_US)  # after a dropped connection
IDLE_US = (60 * SECOND_US, 600 * SECOND_US)  # between a close and the next connection
CONNECTION_FLOWS = (50, 300)  # flows one connection runs before the POS closes it
JITTER = (0.75, 1.25)  # a flow's recorded timing, stretched by a factor in this range
FLUSH_EVERY = 4 * INDEX_BATCH_LINES  # events journaled between two index flushes
FOLD_BATCH = INDEX_BATCH_LINES  # events per take_changes()/follow(), as the writer does
GENERATED = "generated.json"  # in the work directory, once the store is complete

_EXECUTE = MessageType.EXECUTE_TRANSACTION_REQUEST.value
_TRANSACTION_REQUESTS = frozenset({_EXECUTE, MessageType.AMEND_TRANSACTION_REQUEST.value})
_IDENTIFIER = re.compile(r'"([0-9a-f]{32})"')  # a transaction identifier, in JSON

Record = dict[str, Any]  # one line of a fixture session (a store export)
Emitted = tuple[int, str, Sender, str, str]  # at_us, session_id, sender, kind, payload


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the flows ----------------------------------------------------------------------


@attrs.frozen
class Step:
    """One event of a flow."""

    offset_us: int  # from the flow's first event, in real time
    side: int  # 0: the POS connection running the flow; n: the flow's n-th other one
    sender: Sender
    kind: str
    template: str  # the payload, with {n} where a tag or a transaction identifier goes


@attrs.frozen
class Flow:
    """Recorded events to play again: fresh tags, identifiers and other connections."""

    name: str
    steps: tuple[Step, ...]
    tags: int  # distinct tags: {0} .. {tags - 1} in the templates
    identifiers: int  # distinct transaction identifiers: the slots after the tags
    sides: int  # other POS connections the flow opens and closes (a busy reader)
    transactions: int  # execute and amend requests: rows of `transactions`
    drops: bool  # the flow ends its POS's connection (the server dropped it)

    @classmethod
    def of(cls, name: str, records: Sequence[Record], main: str) -> Flow:
        tags = list(dict.fromkeys(r["tag"] for r in records if r["tag"] is not None))
        identifiers = list(
            dict.fromkeys(i for r in records for i in _IDENTIFIER.findall(_payload(r)))
        )
        slot = {value: n for n, value in enumerate([*tags, *identifiers])}
        pattern = re.compile("|".join(map(re.escape, slot))) if slot else None
        sides = list(dict.fromkeys(r["session_id"] for r in records if r["session_id"] != main))
        steps = []
        for r in records:
            template = _payload(r).replace("{", "{{").replace("}", "}}")
            if pattern is not None:
                template = pattern.sub(lambda m: f"{{{slot[m.group()]}}}", template)
            if r["raw_b64"] is not None or r["sender"] not in SENDERS:
                raise SystemExit(f"{name}: seq {r['seq']} cannot be replayed from its payload")
            steps.append(
                Step(
                    offset_us=(r["recorded_at_us"] - records[0]["recorded_at_us"]) * TIME_SCALE,
                    side=0 if r["session_id"] == main else 1 + sides.index(r["session_id"]),
                    sender=cast(Sender, r["sender"]),
                    kind=r["kind"],
                    template=template,
                )
            )
        return cls(
            name=name,
            steps=tuple(steps),
            tags=len(tags),
            identifiers=len(identifiers),
            sides=len(sides),
            transactions=sum(
                r["sender"] == "client" and r["msg_type"] in _TRANSACTION_REQUESTS for r in records
            ),
            drops=any(r["session_id"] == main and _closed(r) for r in records),
        )


def _payload(record: Record) -> str:
    payload = record["payload"]
    if not isinstance(payload, str):
        raise SystemExit(f"seq {record['seq']} of a fixture has no payload")
    return payload


def _closed(record: Record) -> bool:
    return bool(record["kind"] == "connection_closed")


def _records(fixture: str) -> list[Record]:
    lines = (SESSIONS / f"{fixture}.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def fixture_flow(name: str, fixture: str, index: int) -> Flow:
    """The `index`-th execute of the fixture's first session, and what follows it up to
    the session's next execute: other connections' events included, the session's close
    only when the server closed it (a dropped connection)."""
    records = _records(fixture)
    main = records[0]["session_id"]
    starts = [
        n
        for n, r in enumerate(records)
        if r["session_id"] == main and r["sender"] == "client" and r["msg_type"] == _EXECUTE
    ]
    end = starts[index + 1] if index + 1 < len(starts) else len(records)
    picked = []
    for r in records[starts[index] : end]:
        if r["session_id"] == main and _closed(r):
            if orjson.loads(_payload(r)).get("by") == "server":
                picked.append(r)
            break
        picked.append(r)
    return Flow.of(name, picked, main)


def connection_flows() -> tuple[Flow, Flow]:
    """How a POS connection opens (through its login) and how the POS closes it."""
    records = _records("simple")
    main = records[0]["session_id"]
    first = next(n for n, r in enumerate(records) if r["msg_type"] == _EXECUTE)
    close = [r for r in records if r["session_id"] == main and _closed(r)]
    return Flow.of("connect", records[:first], main), Flow.of("close", close[-1:], main)


class Synthesis:
    """The events of `lanes` POS connections running `transactions` in all, in time order."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._flows = [fixture_flow(name, fixture, n) for name, (fixture, n, _) in MIX.items()]
        self._cum_weights = list(itertools.accumulate(share for _, _, share in MIX.values()))
        self._connect, self._close = connection_flows()
        self.played: Counter[str] = Counter()
        self.transactions = 0

    def events(self, transactions: int, lanes: int) -> Iterator[Emitted]:
        quotas = [transactions // lanes + (n < transactions % lanes) for n in range(lanes)]
        starts = [START_US + self._rng.randrange(60 * SECOND_US) for _ in quotas]
        running = [self._lane(quota, start) for quota, start in zip(quotas, starts, strict=True)]
        return heapq.merge(*running, key=itemgetter(0))

    def _lane(self, quota: int, at_us: int) -> Iterator[Emitted]:
        """One POS: connects, runs flows, closes (or is dropped), until its quota is run."""
        rng, done = self._rng, 0
        while done < quota:
            session = self._session_id()
            at_us = yield from self._play(self._connect, session, at_us)
            dropped = False
            for _ in range(rng.randint(*CONNECTION_FLOWS)):
                at_us += rng.randrange(*THINK_US)
                flow = self._flows[
                    bisect.bisect(self._cum_weights, rng.random() * self._cum_weights[-1])
                ]
                at_us = yield from self._play(flow, session, at_us)
                done += flow.transactions
                self.transactions += flow.transactions
                self.played[flow.name] += 1
                dropped = flow.drops
                if dropped or done >= quota:
                    break
            if dropped:
                at_us += rng.randrange(*RECONNECT_US)
            else:
                at_us = yield from self._play(self._close, session, at_us + SECOND_US)
                at_us += rng.randrange(*IDLE_US)

    def _play(self, flow: Flow, session: str, at_us: int) -> Generator[Emitted, None, int]:
        """Yield the flow's events from `at_us`; returns the time of its last."""
        rng, bits = self._rng, self._rng.getrandbits
        values = [str(uuid.UUID(int=bits(128), version=4)) for _ in range(flow.tags)]
        values += [f"{bits(128):032x}" for _ in range(flow.identifiers)]
        sessions = [session, *(self._session_id() for _ in range(flow.sides))]
        stretch = rng.uniform(*JITTER)
        for step in flow.steps:
            at = at_us + int(step.offset_us * stretch)
            yield at, sessions[step.side], step.sender, step.kind, step.template.format(*values)
        return at_us + int(flow.steps[-1].offset_us * stretch)

    def _session_id(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"


# --- phases (each in its own process) -------------------------------------------------


def phase_generate(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    synthesis = Synthesis(args.seed)
    total = args.transactions
    events = 0
    started = last = time.perf_counter()
    with EventLog.open(work / "store") as event_log:
        for at_us, session_id, sender, kind, payload in synthesis.events(total, args.lanes):
            stamp = Stamp(at_us, MONO_START_NS + (at_us - START_US) * 1000)
            if sender == "tap":
                event_log.record_lifecycle(session_id, kind, payload.encode(), stamp)
            else:
                event_log.record_message(session_id, sender, payload.encode(), stamp)
            events += 1
            if events % FLUSH_EVERY == 0:
                event_log.flush()
                now = time.perf_counter()
                if now - last >= 10:
                    last = now
                    rate = events / (now - started)
                    done = synthesis.transactions / total
                    eta = (now - started) * (1 - done) / done if done else 0
                    log(
                        f"generated {events:,} events, {synthesis.transactions:,} of {total:,} "
                        f"transactions ({done:.0%}): {rate:,.0f} events/s, "
                        f"about {eta / 60:.0f} min to go"
                    )
    elapsed = time.perf_counter() - started
    return {
        "transactions": synthesis.transactions,
        "events": events,
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "rss_mb": peak_rss_mb(),
        "played": dict(synthesis.played.most_common()),
        "index_mb": _size_mb(work / "store" / "index.duckdb"),
    }


def phase_scan(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    con = connect(work / "store" / "index.duckdb", read_only=True)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        count, payload_chars = con.execute(
            "SELECT count(*), sum(length(payload)) FROM events"
        ).fetchall()[0]
        timings.append(time.perf_counter() - started)
    con.close()
    best = min(timings)
    return {
        "seconds": best,
        "all_seconds": timings,
        "events": count,
        "events_per_s": count / best,
        "payload_mb": payload_chars / 2**20,
        "rss_mb": peak_rss_mb(),
    }


def phase_rebuild(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    root = work / "store"
    marks = iter(range(1, 11))
    next_mark = next(marks)
    last = (0, time.perf_counter())  # events folded and the time, at the last mark

    def progress(folded: int, total: int) -> None:
        nonlocal next_mark, last
        if folded * 10 >= next_mark * total:
            now = time.perf_counter()
            rate = (folded - last[0]) / (now - last[1])
            log(f"rebuild: {folded:,} of {total:,} events folded ({rate:,.0f} events/s lately)")
            next_mark, last = next(marks, 11), (folded, now)

    started = time.perf_counter()
    folded = rebuild_projections(root, progress=progress)
    elapsed = time.perf_counter() - started
    rss = peak_rss_mb()
    con = connect(root / "index.duckdb", read_only=True)
    try:
        outcomes = con.execute(
            "SELECT outcome, count(*) FROM transactions GROUP BY ALL ORDER BY 2 DESC"
        ).fetchall()
        findings = con.execute(
            "SELECT rule, count(*) FROM protocol_findings GROUP BY ALL ORDER BY 2 DESC"
        ).fetchall()
        rows = {
            table: query_scalar(con, f"SELECT count(*) FROM {table}")
            for table in ("transactions", "transaction_states", "latencies", "protocol_findings")
        }
    finally:
        con.close()
    return {
        "seconds": elapsed,
        "events": folded,
        "events_per_s": folded / elapsed,
        "rss_mb": rss,
        "rows": rows,
        "outcomes": dict(outcomes),
        "findings": dict(findings),
    }


def _observed_batches(index: Path, upto: int) -> deque[list[Observed]]:
    """Events 1..upto as the projections read them (see `store._events_between`), in
    batches of FOLD_BATCH."""
    con = connect(index, read_only=True)
    batches: deque[list[Observed]] = deque()
    try:
        for after in range(0, upto, FOLD_BATCH):
            source = f"events WHERE seq > {after} AND seq <= {min(after + FOLD_BATCH, upto)}"
            table = con.sql(observed_query(DEFAULT_DIALECT, source)).to_arrow_table()
            batches.append(list(map(Observed, *(column.to_pylist() for column in table.columns))))
    finally:
        con.close()
    return batches


def phase_fold(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The fold alone. Each batch is let go once folded, and the events waiting are
    frozen out of the garbage collector's sight, so that the fold keeps and collects
    what it would in the index writer, where events arrive 4096 at a time."""
    batches = _observed_batches(work / "store" / "index.duckdb", args.fold_events)
    events = sum(map(len, batches))
    gc.collect()
    gc.freeze()
    rss_loaded = peak_rss_mb()
    projector = Projector()
    rows = 0
    started = time.perf_counter()
    while batches:
        for event in batches.popleft():
            projector.feed(event)
        rows += sum(len(changed) for changed in projector.take_changes().values())
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "events": events,
        "events_per_s": events / elapsed,
        "rows": rows,
        "rss_mb": peak_rss_mb(),
        "rss_loaded_mb": rss_loaded,
    }


def phase_follow(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh index that the events arrive in, batch by batch, as they do from the tap's
    index writer; `follow` after each batch is what is timed. (The batches are read
    over a second connection, not by ATTACH: with the store's index attached,
    `projection_meta` is found in `duckdb_tables()` but not by its bare name.)"""
    path = work / "follow.duckdb"
    path.unlink(missing_ok=True)
    source = connect(work / "store" / "index.duckdb", read_only=True)
    con = connect(path)
    try:
        con.execute(f"SET threads = {WRITER_THREADS}")
        con.execute(f"SET checkpoint_threshold = '{WRITER_CHECKPOINT_THRESHOLD}'")
        create_schema(con)
        head = min(args.fold_events, query_scalar(source, "SELECT max(seq) FROM event_log"))
        store = ProjectionStore()
        inserting = 0.0
        timings: list[float] = []  # follow() after each batch
        for after in range(0, head, FOLD_BATCH):
            started = time.perf_counter()
            batch = source.sql(
                "SELECT * FROM event_log WHERE seq > ? AND seq <= ? ORDER BY seq",
                params=[after, min(after + FOLD_BATCH, head)],
            ).to_arrow_table()
            con.register("batch", batch)
            con.execute("INSERT INTO event_log SELECT * FROM batch")
            con.unregister("batch")
            inserted = time.perf_counter()
            store.follow(con)
            timings.append(time.perf_counter() - inserted)
            inserting += inserted - started
    finally:
        con.close()
        source.close()
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
    tenth = max(1, len(timings) // 10)
    return {
        "seconds": sum(timings),
        "events": head,
        "events_per_s": head / sum(timings),
        "first_tenth_per_s": tenth * FOLD_BATCH / sum(timings[:tenth]),
        "last_tenth_per_s": tenth * FOLD_BATCH / sum(timings[-tenth:]),
        "insert_seconds": inserting,
        "rss_mb": peak_rss_mb(),
    }


PHASES = {
    "generate": phase_generate,
    "scan": phase_scan,
    "rebuild": phase_rebuild,
    "fold": phase_fold,
    "follow": phase_follow,
}


# --- rebuild, old and new side by side (issue 13) -------------------------------------

# Run in a fresh interpreter with the checkout under test first on its path; prints
# the figures as JSON. `workers` is passed only when set, so any p3log's
# `rebuild_projections` can be measured.
_REBUILD_CHILD = """
import json, os, resource, sys, time
from pathlib import Path
import p3log
from p3log.projections.opening import rebuild_projections
root, workers = Path(sys.argv[1]), int(sys.argv[2])
marks = []  # (events folded, seconds) after each chunk

def progress(folded, total):
    marks.append((folded, time.perf_counter() - started))

started, load = time.perf_counter(), os.getloadavg()
events = rebuild_projections(root, progress=progress, **({"workers": workers} if workers else {}))
seconds = time.perf_counter() - started
tenth = max(1, len(marks) // 10)

def rate(first, last):
    (done_before, before), (done, at) = first, last
    return (done - done_before) / (at - before) if at > before else None
own = resource.getrusage(resource.RUSAGE_SELF)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "p3log": str(Path(p3log.__file__).parent),
    "events": events,
    "seconds": seconds,
    "events_per_s": events / seconds,
    "first_tenth_per_s": rate((0, 0.0), marks[tenth - 1]) if marks else None,
    "last_tenth_per_s": rate(marks[-tenth - 1], marks[-1]) if len(marks) > tenth else None,
    "cpu_s": own.ru_utime + own.ru_stime,
    "workers_cpu_s": children.ru_utime + children.ru_stime,
    "rss_mb": own.ru_maxrss / 1024,
    "load": load,
    "load_after": os.getloadavg(),
}))
"""


def copy_store(store: Path, into: Path) -> Path:
    """A copy of `store` a rebuild may change: its index copied, the journal's segments
    (which a rebuild only reads) hard-linked, so a copy of a large store is quick."""
    shutil.rmtree(into, ignore_errors=True)
    for path in sorted(store.rglob("*")):
        target = into / path.relative_to(store)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.parent.name == "journal":
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return into


def measure(python_path: Path, store: Path, workers: int | None = None) -> dict[str, Any]:
    """`rebuild_projections(store)` of the p3log checkout at `python_path`, in its own
    process: events, seconds, events/s, CPU seconds (the process's own and its
    workers'), peak RSS, and the load average before and after. The store is changed
    (rebuilt): pass a `copy_store`."""
    env = dict(os.environ, PYTHONPATH=str(python_path))
    command = [sys.executable, "-c", _REBUILD_CHILD, str(store), str(workers or 0)]
    out = subprocess.run(
        command, check=True, stdout=subprocess.PIPE, text=True, env=env, cwd=python_path
    )
    # The figures are the last line: anything a library printed before them is not.
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    if Path(result["p3log"]) != python_path / "p3log":
        raise SystemExit(f"{python_path}: the child imported {result['p3log']}")
    return result


def compare_rebuilds(
    old: Path, new: Path, stores: Sequence[Path], *, single_process: bool = True
) -> None:
    """The rebuild of each store by the old and the new checkout, one after the other
    over copies of the same store (made next to it), with the new one also in a
    single process unless not `single_process`."""
    runs = [("old", old, None), ("new, 1 process", new, 1), ("new", new, None)]
    if not single_process:
        del runs[1]
    print(
        f"{'store':<40}{'code':<16}{'events':>11}{'seconds':>9}{'events/s':>10}"
        f"{'CPU s':>8}{'workers':>9}{'RSS MB':>8}{'load':>6}{'1st 10%/s':>10}{'last 10%/s':>11}"
    )
    for store in stores:
        for label, checkout, workers in runs:
            copy = copy_store(store, store.parent / "rebuild-copy")
            try:
                figures = measure(checkout, copy, workers)
            finally:
                shutil.rmtree(copy, ignore_errors=True)
            print(
                f"{str(store)[-39:]:<40}{label:<16}{figures['events']:>11,}"
                f"{figures['seconds']:>9.1f}{figures['events_per_s']:>10,.0f}"
                f"{figures['cpu_s']:>8.1f}{figures['workers_cpu_s']:>9.1f}"
                f"{figures['rss_mb']:>8.0f}{figures['load'][0]:>6.1f}"
                f"{_rate(figures['first_tenth_per_s']):>10}{_rate(figures['last_tenth_per_s']):>11}",
                flush=True,
            )
    print(
        f"CPU s: the rebuilding process's; workers: its fold processes'. load: the "
        f"1-minute load average as the run started ({os.cpu_count()} CPUs; now "
        f"{os.getloadavg()[0]:.1f}). 1st/last 10%: events/s over the first and the last "
        "tenth of the chunks (a rebuild that slows as its tables grow shows it there)"
    )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


# --- the run ----------------------------------------------------------------------------


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _child(phase: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--store", str(work)]
    for option in ("transactions", "lanes", "seed", "fold_events"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    load = os.getloadavg()[0]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    result: dict[str, Any] = json.loads(out)
    result["load"] = load
    return result


def run(work: Path, args: argparse.Namespace) -> None:
    done = work / GENERATED
    if done.exists():
        generated = json.loads(done.read_text(encoding="utf-8"))
        log(f"reusing the store in {work}: {generated['transactions']:,} transactions")
    else:
        log(f"generating {args.transactions:,} transactions in {work / 'store'}")
        generated = _child("generate", work, args)
        done.write_text(json.dumps(generated, indent=2), encoding="utf-8")
    results = {"generate": generated}
    for phase in ("scan", "rebuild", "fold", "follow"):
        log(f"phase: {phase}")
        results[phase] = _child(phase, work, args)
    report(work, results)


def report(work: Path, results: dict[str, dict[str, Any]]) -> None:
    generated, scan, rebuild = results["generate"], results["scan"], results["rebuild"]
    fold, follow = results["fold"], results["follow"]
    transactions, events = generated["transactions"], generated["events"]
    print(
        f"{transactions:,} transactions, {events:,} events "
        f"({scan['payload_mb']:,.0f} MB of payload text); store in {work / 'store'}"
    )
    print(
        f"{'phase':<52}{'events':>12}{'seconds':>9}{'events/s':>11}{'peak RSS MB':>13}{'load':>6}"
    )
    for label, figures in (
        ("generate (real write path, no projections)", generated),
        ("plain scan: count(*), sum(length(payload))", scan),
        ("full rebuild: rebuild_projections(root)", rebuild),
        (f"fold alone: Projector.feed, take_changes/{FOLD_BATCH}", fold),
        (f"live writer: ProjectionStore.follow/{FOLD_BATCH}", follow),
    ):
        print(
            f"{label:<52}{figures['events']:>12,}{figures['seconds']:>9.2f}"
            f"{figures['events_per_s']:>11,.0f}{figures['rss_mb']:>13.0f}"
            f"{figures.get('load', float('nan')):>6.1f}"
        )
    ratio = rebuild["seconds"] / scan["seconds"]
    print(f"full rebuild / plain scan: {ratio:.1f}x")
    print(
        f"fold alone: peak RSS {fold['rss_loaded_mb']:,.0f} MB with its events loaded, "
        "before folding"
    )
    print(
        f"live writer: {follow['first_tenth_per_s']:,.0f} events/s over its first tenth, "
        f"{follow['last_tenth_per_s']:,.0f} over its last; inserting the batches "
        f"(not in the figure) took {follow['insert_seconds']:.2f} s"
    )
    print(f"load: the 1-minute load average as the phase started ({os.cpu_count()} CPUs)")
    at_million = rebuild["seconds"] * 1_000_000 / transactions
    scaled = (
        ""
        if transactions == 1_000_000
        else f" (scaled to 1,000,000 transactions: {at_million:.1f} s)"
    )
    print(
        f"target full rebuild <= 30 s at 1,000,000 transactions: {rebuild['seconds']:.1f} s"
        f"{scaled}: {_met(at_million <= 30)}"
    )
    for label, figures in (("fold alone", fold), ("live writer", follow)):
        rate = figures["events_per_s"]
        met = _met(rate >= 200_000)
        print(f"target incremental fold >= 200,000 events/s, {label}: {rate:,.0f}: {met}")
    rows = ", ".join(f"{table} {count:,}" for table, count in rebuild["rows"].items())
    print(f"rows after the rebuild: {rows}")
    print("transactions by outcome: " + _counts(rebuild["outcomes"]))
    print("findings by rule: " + (_counts(rebuild["findings"]) or "none"))
    print("flows played: " + _counts(generated["played"]))
    journal_mb = _size_mb(work / "store" / "journal")
    index_mb = _size_mb(work / "store" / "index.duckdb")
    print(
        f"on disk: journal {journal_mb:,.0f} MB, index {generated['index_mb']:,.0f} MB "
        f"with the events alone, {index_mb:,.0f} MB with the projections"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, default=None, help="work directory")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the store")
    parser.add_argument("--lanes", type=int, default=8, help="POS connections at a time")
    parser.add_argument("--fold-events", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rebuild-vs",
        type=Path,
        metavar="OLD_CHECKOUT",
        help="only compare the rebuild of OLD_CHECKOUT's p3log with this one's, over "
        "copies of each --rebuild-store",
    )
    parser.add_argument(
        "--rebuild-store",
        type=Path,
        action="append",
        default=[],
        help="a store (a work directory's `store`, kept with --keep); repeatable",
    )
    args = parser.parse_args()

    if args.rebuild_vs:
        if not args.rebuild_store:
            parser.error("--rebuild-vs needs --rebuild-store")
        new = Path(__file__).resolve().parent.parent
        compare_rebuilds(args.rebuild_vs.resolve(), new, args.rebuild_store)
        return

    if args.phase:  # child process: one phase, figures as JSON on stdout
        print(json.dumps(PHASES[args.phase](args.store, args)))
        return
    if args.store is None:
        if args.keep:
            parser.error("--keep needs --store DIR")
        with tempfile.TemporaryDirectory(prefix="p3log-bench-") as tmp:
            run(Path(tmp), args)
        return
    work: Path = args.store
    if (work / "store").exists() and not (args.keep and (work / GENERATED).exists()):
        parser.error(
            f"{work} already holds a store: pass --keep to reuse one generated to the end, "
            "or remove it"
        )
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work / "store", ignore_errors=True)
            (work / GENERATED).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
