"""A full rebuild equals the incremental fold, and rebuilding is deterministic.

Hypothesis writes random sessions (valid flows, and messages in any order, with
reused tags, unknown tags, malformed bytes and closes) into a real store, in random
batches, with the projections following the index as they do behind a tap, and
with the writer closed and reopened at random points (the resume path). The tables
it leaves must equal a rebuild from scratch, and a second rebuild must equal the
first.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p3log.projections.opening import open_log
from p3log.projections.rows import TABLES
from p3log.projections.store import ProjectionStore
from p3log.store.event import Stamp
from p3log.store.log import EventLog

SESSIONS = ["s-one", "s-two", "s-three"]
TAGS = ["t1", "t2", "t3", "t4"]
RESOURCES = ["devices/a", "devices/b"]

# One step of a session: (sender or "close", message bytes).
Step = tuple[str, bytes]


def _message(msg_type: str, tag: str, resource: str | None, **fields: Any) -> bytes:
    body_key = "".join(
        part if i == 0 else part.capitalize() for i, part in enumerate(msg_type.lower().split("_"))
    )
    envelope: dict[str, Any] = {"type": msg_type, "tag": tag}
    if resource is not None:
        envelope["resource"] = resource
    status = fields.pop("status", None)
    if status is not None:
        envelope["status"] = status
    error = fields.pop("error", None)
    if error is not None:
        envelope["error"] = {"type": error, "source": "TRANSACTION", "message": "no"}
    envelope[body_key] = fields
    return json.dumps(envelope).encode()


def _transaction(status: str) -> dict[str, Any]:
    return {"identifier": "ab" * 16, "amount": 12.5, "currency": "EUR", "status": status}


tags = st.sampled_from(TAGS)
resources = st.sampled_from(RESOURCES)

single_steps = st.one_of(
    st.builds(
        lambda tag, resource, amount: (
            "client",
            _message(
                "EXECUTE_TRANSACTION_REQUEST",
                tag,
                resource,
                transactionParameters={"amount": amount, "currency": "EUR", "type": "CHARGE"},
            ),
        ),
        tags,
        resources,
        st.sampled_from([1, 12.5, 90.02]),
    ),
    st.builds(
        lambda tag: (
            "client",
            _message(
                "AMEND_TRANSACTION_REQUEST",
                tag,
                None,
                transactionParameters={"type": "REFUND", "referencedTransactionIdentifier": "x"},
            ),
        ),
        tags,
    ),
    st.builds(
        lambda tag, resource, state, abortable: (
            "server",
            _message(
                "EXECUTE_TRANSACTION_UPDATE",
                tag,
                resource,
                status="OK",
                state=state,
                stateDetails=state,
                abortable=abortable,
                transaction=_transaction("PENDING"),
            ),
        ),
        tags,
        resources,
        st.sampled_from(["PREPARING", "PROCESSING", "WAITING_FOR_CARD_PRESENTATION"]),
        st.booleans(),
    ),
    st.builds(
        lambda tag, resource: (
            "server",
            _message(
                "EXECUTE_TRANSACTION_ACTION",
                tag,
                resource,
                status="OK",
                action="SIGNATURE",
                transaction=_transaction("PENDING"),
            ),
        ),
        tags,
        resources,
    ),
    st.builds(
        lambda tag, resource: ("client", _message("ABORT_TRANSACTION_REQUEST", tag, resource)),
        tags,
        resources,
    ),
    st.builds(
        lambda tag, resource, refused: (
            "server",
            _message(
                "ABORT_TRANSACTION_RESPONSE",
                tag,
                resource,
                status="ERROR" if refused else "OK",
                error="TRANSACTION_NO_LONGER_ABORTABLE" if refused else None,
            ),
        ),
        tags,
        resources,
        st.booleans(),
    ),
    st.builds(
        lambda tag, resource, on_receipt: (
            "client",
            _message(
                "SUBMIT_SIGNATURE_REQUEST",
                tag,
                resource,
                **({"signOnReceipt": True} if on_receipt else {"signature": "iVBOR"}),
            ),
        ),
        tags,
        resources,
        st.booleans(),
    ),
    st.builds(
        lambda tag, resource, refused: (
            "server",
            _message(
                "SUBMIT_SIGNATURE_RESPONSE", tag, resource, status="ERROR" if refused else "OK"
            ),
        ),
        tags,
        resources,
        st.booleans(),
    ),
    st.builds(
        lambda msg_type, tag, resource, status: (
            "server",
            _message(
                msg_type,
                tag,
                resource,
                status=status,
                error="SERVER_TIMEOUT" if status == "ERROR" else None,
                transaction=_transaction(status if status != "ERROR" else "ERROR"),
            ),
        ),
        st.sampled_from(["EXECUTE_TRANSACTION_RESPONSE", "AMEND_TRANSACTION_RESPONSE"]),
        tags,
        resources,
        st.sampled_from(["APPROVED", "DECLINED", "ABORTED", "ERROR"]),
    ),
    st.just(("client", b'{"type": "EXECUTE_TRANSACTION_REQUEST", "tag": ')),  # malformed
    st.just(("close", b"")),
)


def _valid_flow(tag: str, resource: str) -> list[Step]:
    """Execute with an abortable window, a signature action, and the response."""
    return [
        (
            "client",
            _message("EXECUTE_TRANSACTION_REQUEST", tag, resource, transactionParameters={}),
        ),
        (
            "server",
            _message(
                "EXECUTE_TRANSACTION_UPDATE", tag, resource, status="OK", abortable=True, state="A"
            ),
        ),
        (
            "server",
            _message(
                "EXECUTE_TRANSACTION_UPDATE", tag, resource, status="OK", abortable=False, state="B"
            ),
        ),
        ("server", _message("EXECUTE_TRANSACTION_ACTION", tag, resource, status="OK", action="S")),
        ("client", _message("SUBMIT_SIGNATURE_REQUEST", tag + "-s", resource, signature="x")),
        ("server", _message("SUBMIT_SIGNATURE_RESPONSE", tag + "-s", resource, status="OK")),
        (
            "server",
            _message(
                "EXECUTE_TRANSACTION_RESPONSE",
                tag,
                resource,
                status="OK",
                transaction=_transaction("APPROVED"),
            ),
        ),
    ]


session_steps = st.lists(
    st.one_of(single_steps.map(lambda step: [step]), st.builds(_valid_flow, tags, resources)),
    max_size=12,
).map(lambda groups: [step for group in groups for step in group])

# A whole store: each session's steps, interleaved by a random schedule, then cut
# into random batches; some batch boundaries also close and reopen the writer.
stores = st.tuples(
    st.lists(session_steps, min_size=1, max_size=len(SESSIONS)),
    st.randoms(use_true_random=False),
)


def _interleave(sessions: list[list[Step]], rng: Any) -> list[tuple[str, Step]]:
    queues = [(SESSIONS[i], list(steps)) for i, steps in enumerate(sessions)]
    merged: list[tuple[str, Step]] = []
    while any(steps for _, steps in queues):
        session_id, steps = rng.choice([queue for queue in queues if queue[1]])
        merged.append((session_id, steps.pop(0)))
    return merged


def _record(log: EventLog, session_id: str, step: Step, at_us: int) -> None:
    sender, data = step
    stamp = Stamp(recorded_at_us=at_us, mono_ns=at_us * 1000)
    if sender == "close":
        log.record_lifecycle(session_id, "connection_closed", {"by": "client"}, stamp)
    else:
        log.record_message(session_id, sender, data, stamp)  # type: ignore[arg-type]


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table.name: con.execute(f"SELECT * FROM {table.name} ORDER BY ALL").fetchall()
        for table in TABLES
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stores)
def test_incremental_fold_equals_full_rebuild_and_rebuilds_repeat(
    store: tuple[list[list[Step]], Any],
) -> None:
    sessions, rng = store
    steps = _interleave(sessions, rng)
    root = Path(tempfile.mkdtemp(prefix="p3log-prop-"))
    try:
        log = open_log(root)
        for i, (session_id, step) in enumerate(steps):
            _record(log, session_id, step, 1_700_000_000_000_000 + i * 1_500)
            if rng.random() < 0.3:  # a writer batch: the projections follow the index
                log.flush()
            if rng.random() < 0.1:  # a restart: the next writer resumes the fold
                log.close()
                log = open_log(root)
        log.close()

        with EventLog.open(root, create=False) as log:
            incremental = _tables(log.index)
            ProjectionStore().rebuild(log.index)
            rebuilt = _tables(log.index)
            ProjectionStore().rebuild(log.index)
            rebuilt_again = _tables(log.index)
        assert incremental == rebuilt
        assert rebuilt_again == rebuilt
    finally:
        shutil.rmtree(root, ignore_errors=True)
