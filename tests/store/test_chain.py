"""The chain as Python seals it is the chain DuckDB's SQL recomputes, for any content."""

from __future__ import annotations

import string
from pathlib import Path
from tempfile import TemporaryDirectory

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p3log.store.chain import CANONICAL_SQL
from p3log.store.event import GENESIS_HASH, EventBody, Stamp, canonical_bytes, seal
from p3log.store.index import journal_relation_sql
from p3log.store.journal import segment_name
from p3log.store.log import EventLog
from p3log.store.records import decode_canonical, decode_event, encode_record
from p3log.store.verify import verify_store

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
optional_texts = st.none() | texts

bodies = st.builds(
    EventBody,
    session_id=texts,
    sender=st.sampled_from(["client", "server"]),
    kind=st.sampled_from(["message", "malformed"]),
    msg_type=optional_texts,
    tag=optional_texts,
    resource=optional_texts,
    status=optional_texts,
    stamp=st.builds(
        Stamp,
        recorded_at_us=st.integers(0, 2**62),
        mono_ns=st.integers(-(2**63), 2**63 - 1),
    ),
    payload=optional_texts,
    raw=st.none() | st.binary(max_size=40),
    parse_note=optional_texts,
    redaction_policy=st.text(string.ascii_letters + "/-1", min_size=1, max_size=10),
    redactions=st.lists(st.sampled_from(["merchant_secret", "pan", "x"]), max_size=3).map(tuple),
)


@given(st.lists(bodies, min_size=1, max_size=8))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_sql_verification_agrees_with_python_sealing_after_ingest(
    chain_bodies: list[EventBody],
) -> None:
    with TemporaryDirectory() as tmp:
        root = Path(tmp) / "s"
        EventLog.open(root).close()
        events = [seal(chain_bodies[0], 1, GENESIS_HASH)]
        for body in chain_bodies[1:]:
            events.append(seal(body, events[-1].seq + 1, events[-1].hash))
        segment = root / "journal" / segment_name(1)
        segment.write_bytes(b"".join(encode_record(event) for event in events))
        EventLog.open(root).close()  # recovery ingests the journal into the index
        report = verify_store(root)
        assert report.ok, report.problem
        assert report.head_hash == events[-1].hash


@given(bodies, st.integers(1, 2**40))
def test_a_record_line_round_trips(body: EventBody, seq: int) -> None:
    event = seal(body, seq, "ab" * 32)
    assert decode_event(decode_canonical(encode_record(event))) == event  # and canonical


@given(st.lists(bodies, min_size=1, max_size=8))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_canonical_form_python_hashes_is_the_one_sql_renders(
    chain_bodies: list[EventBody],
) -> None:
    """`canonical_bytes` (ASCII fields take a shortcut) against chain.py's CANONICAL_SQL,
    field by field, for any text: the one definition of what is hashed."""
    events = [seal(body, seq, GENESIS_HASH) for seq, body in enumerate(chain_bodies, start=1)]
    with TemporaryDirectory() as tmp:
        segment = Path(tmp) / segment_name(1)
        segment.write_bytes(b"".join(encode_record(event) for event in events))
        relation = journal_relation_sql(Path(tmp))
        assert relation is not None
        rendered = duckdb.sql(f"SELECT {CANONICAL_SQL} FROM ({relation}) ORDER BY seq").fetchall()
    assert [row[0].encode() for row in rendered] == [
        canonical_bytes(event.seq, event.body) for event in events
    ]
