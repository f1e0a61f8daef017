"""A single changed byte anywhere in the journal or a sealed segment: verify reports
it, or every reader still reads the same events (never accepted and read differently)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p3log.store.index import connect, sql_string
from p3log.store.journal import segment_paths
from p3log.store.log import EventLog
from p3log.store.records import decode_event, decode_line
from p3log.store.segments import EventSegments, sealed_segments
from p3log.store.verify import verify_store
from tests.conftest import message_bytes

EVENTS = 12


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "store"
    with EventLog.open(root, followers=[EventSegments(root, seal_events=5)]) as log:
        for n in range(EVENTS):
            log.record_message("s1", "client", message_bytes("PING_REQUEST", f"t{n}", n="é/\t"))
        log.record_message("s1", "server", b'{"type": "PING_RESPONSE",  "tag":"t"}')  # not strict
        log.record_message("s1", "server", b"\xff not json")
    assert verify_store(root).ok
    return root


def _journal_events(root: Path) -> list[object]:
    lines = [line for p in segment_paths(root / "journal") for line in p.read_bytes().splitlines()]
    return [decode_event(decode_line(line)) for line in lines]


def _duckdb_rows(root: Path) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    with connect() as con:
        for segment in sealed_segments(root):
            rows += con.execute(
                f"SELECT * FROM read_parquet({sql_string(str(segment.path))}) ORDER BY seq"
            ).fetchall()
    return rows


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(["journal", "segment"]),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    byte=st.integers(0, 255),
)
def test_a_changed_byte_is_reported_or_changes_no_reading(
    pristine: Path, tmp_path_factory: pytest.TempPathFactory, target: str, where: float, byte: int
) -> None:
    root = tmp_path_factory.mktemp("flip") / "store"
    shutil.copytree(pristine, root)
    (root / "index.duckdb").unlink()  # the index is checked against the journal elsewhere
    files = (
        segment_paths(root / "journal")
        if target == "journal"
        else [s.path for s in sealed_segments(root)]
    )
    path = files[int(where * len(files))]
    data = bytearray(path.read_bytes())
    offset = int(where * len(files) % 1 * len(data))
    if data[offset] == byte:
        return
    before = (_journal_events(pristine), _duckdb_rows(pristine))
    data[offset] = byte
    path.write_bytes(bytes(data))
    if verify_store(root).ok:
        assert (_journal_events(root), _duckdb_rows(root)) == before
