"""Lifecycle events as records: one class per kind, one converter, old stores still read.

The payload JSON is what stores, fixtures and exports already hold; reading is
lenient (a hostile or older store: wrong types and unknown keys are kept in `extra`,
unknown kinds read as `Unknown`), and a record written back is the object it was read
from. Records enter the store through the redaction door like any payload.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from p3log.store import lifecycle
from p3log.store.lifecycle import (
    ConnectionClosed,
    ConnectionOpened,
    ForwardFailed,
    HandshakeTimeout,
    ReplayDivergence,
    Unknown,
    UpstreamConnected,
    to_json,
    to_plain,
)
from p3log.store.log import EventLog
from p3log.store.read import open_store

RECORDS = lifecycle._RECORDS
KEYS = sorted({lifecycle._key(f) for r in RECORDS for f in lifecycle._fields(r)})

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
details = st.dictionaries(
    st.sampled_from([*KEYS, "extra", "name", "KIND"]) | st.text(max_size=10),
    json_values,
    max_size=8,
)
kinds = st.sampled_from([r.KIND for r in RECORDS]) | st.from_regex(
    r"[a-z][a-z0-9_]{0,12}", fullmatch=True
)


@given(kinds, details)
def test_what_a_store_holds_is_kept_when_read_and_written_back(
    kind: str, found: dict[str, Any]
) -> None:
    record = lifecycle.read(kind, json.dumps(found))
    assert record.kind == kind
    again = json.loads(to_json(record))
    assert {key: again[key] for key in found} == found  # nothing dropped, nothing changed
    added = again.keys() - found.keys()
    assert all(again[key] is None for key in added)  # at most a field written as null


@given(st.sampled_from(RECORDS), details)
def test_a_field_of_the_wrong_type_reads_as_none_and_is_kept(
    record_type: type[lifecycle.Lifecycle], found: dict[str, Any]
) -> None:
    record = lifecycle.structure(record_type.KIND, found)
    assert type(record) is record_type
    for field in lifecycle._fields(record_type):
        value = getattr(record, field.name)
        key = lifecycle._key(field)
        if value is None and found.get(key) is not None:
            assert record.extra[key] == found[key]


def test_old_payloads_read_as_records() -> None:
    # as the tap and the POS recorder wrote them before the records (json.dumps)
    tap_closed = lifecycle.read(
        "connection_closed", '{"by": "client", "code": 1006, "reason": "", "later": [1]}'
    )
    assert tap_closed == ConnectionClosed(by="client", code=1006, reason="", extra={"later": [1]})
    pos_opened = lifecycle.read(
        "connection_opened", '{"peer": "127.0.0.1:1", "recorded_by": "client"}'
    )
    assert pos_opened == ConnectionOpened(peer="127.0.0.1:1", recorded_by="client")
    assert pos_opened.transport is None
    forward = lifecycle.read("forward_failed", '{"from": "server", "code": null, "reason": "x"}')
    assert forward == ForwardFailed(sender="server", code=None, reason="x")
    hostile = lifecycle.read("connection_closed", '{"by": 7, "code": "1000", "reason": true}')
    assert (hostile.by, hostile.code, hostile.reason) == (None, None, None)  # type: ignore[attr-defined]
    assert hostile.extra == {"by": 7, "code": "1000", "reason": True}
    assert lifecycle.read("connection_closed", "[1, 2") == ConnectionClosed()
    assert lifecycle.read("something_new", '{"a": 1}') == Unknown(
        name="something_new", extra={"a": 1}
    )


def test_the_payload_keys_of_each_producer_are_the_ones_stores_hold() -> None:
    assert to_plain(ConnectionOpened(transport="tcp", peer="p")).keys() == {"transport", "peer"}
    ws = ConnectionOpened(
        transport="ws", peer="p", path="/", subprotocols=(), headers=(("a", "b"),)
    )
    assert json.loads(to_json(ws)) == {
        "transport": "ws",
        "peer": "p",
        "path": "/",
        "subprotocols": [],
        "headers": [["a", "b"]],
    }
    assert to_plain(ConnectionClosed(by="tap", code=None, reason="r")) == {
        "by": "tap",
        "code": None,
        "reason": "r",
    }
    assert to_plain(ForwardFailed(sender="client", code=1000, reason="")).keys() == {
        "from",
        "code",
        "reason",
    }
    assert to_plain(UpstreamConnected(url="tcp://h:1")) == {"url": "tcp://h:1"}
    timeout = HandshakeTimeout(transport="tcp", seconds=0.25, reason="r")
    assert json.loads(to_json(timeout)) == {"transport": "tcp", "seconds": 0.25, "reason": "r"}


def test_a_divergence_keeps_exact_numbers() -> None:
    divergence = ReplayDivergence(rule="r", arrived={"amount": Decimal("10.10")}, expected=())
    assert b'"amount":10.10' in to_json(divergence)


def test_records_go_through_the_redaction_door(tmp_path: Path) -> None:
    secret, pan = "Bearer s3cr3t-token-0042", "4111111111111111"
    opened = ConnectionOpened(
        transport="ws",
        peer="127.0.0.1:9",
        path=f"/p3?card={pan}",
        headers=(("authorization", secret), ("x-card", pan)),
    )
    with EventLog.open(tmp_path / "store") as log:
        event = log.record_lifecycle("s1", opened)
        log.record_lifecycle("s1", ConnectionClosed(by="client", code=1000, reason=f"card {pan}"))
    assert event.body.kind == "connection_opened" and event.body.redactions
    con = open_store(tmp_path / "store")
    try:
        rows = con.execute("SELECT kind, payload FROM events ORDER BY seq").fetchall()
    finally:
        con.close()
    text = "".join(payload for _, payload in rows)
    assert "s3cr3t-token-0042" not in text and pan not in text
    payload = next(payload for kind, payload in rows if kind == "connection_opened")
    read = lifecycle.read("connection_opened", payload)
    assert isinstance(read, ConnectionOpened) and read.transport == "ws"
    assert read.headers is not None and read.headers[0][0] == "authorization"


def test_every_record_is_frozen() -> None:
    for record in RECORDS:
        assert attrs.has(record) and record.__setattr__ is not object.__setattr__
