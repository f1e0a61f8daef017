"""Stores that verify's proof (`intact.py`) reports as intact, though the exact report
(`verify._exact_report`) or the independent reference of test_verify_forgeries names a
first bad seq. Each test asserts what verify should say; each failed on verify's proof as first
written (review of the change), or on main where it says "older than this change"."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from p3log.store import verify
from p3log.store.errors import StoreCorrupt
from p3log.store.event import Stamp, record_canonical_bytes
from p3log.store.index import connect, sql_string
from p3log.store.journal import segment_paths
from p3log.store.layout import open_layout
from p3log.store.log import EventLog
from p3log.store.records import decode_canonical
from p3log.store.segments import EventSegments, all_segments
from p3log.store.verify import verify_store
from tests.conftest import message_bytes
from tests.store.test_verify_forgeries import _reference_hash, reference_first_bad_seq

EVENTS = 14
SEALED = 5  # segments 1-5 and 6-10


def _exact_problem_seq(root: Path) -> int | None:
    layout, meta = open_layout(root, create=False)
    spill = root.parent / "spill"
    spill.mkdir(exist_ok=True)
    report = verify._exact_report(layout, meta, None, (), spill)
    return report.problem.seq if report.problem else None


def _record(root: Path, special: dict[int, tuple[bytes, Stamp]] | None = None) -> Path:
    with EventLog.open(root, followers=[EventSegments(root, seal_events=SEALED)]) as log:
        for n in range(EVENTS):
            data, stamp = (special or {}).get(n + 1, (None, None))
            log.record_message(
                "s1", "client", data or message_bytes("PING_REQUEST", f"t{n}", n=n), stamp
            )
    return root


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return _record(tmp_path / "store")


def _rewrite_segment(path: Path, sql: str, params: list[object] | None = None) -> None:
    with connect() as con:
        con.execute(f"CREATE TABLE rows AS SELECT * FROM read_parquet({sql_string(str(path))})")
        con.execute(sql, params or [])
        con.execute(f"COPY (FROM rows ORDER BY seq) TO {sql_string(str(path))} (FORMAT parquet)")


# --- 1. A segment named from seq 0 ---------------------------------------------------


def test_a_segment_named_from_seq_0_holds_a_forged_row_at_seq_0(store: Path) -> None:
    """`_segments_hold_their_ranges` checks a segment's name against the journal's end
    only (last_seq > count), never its start: a segment events-0-5 passes it, and
    `_segments_equal` compares its rows at seq 1..5 only (max(lo, first)); its row at
    seq 0, which the journal has not, is never looked at."""
    first = all_segments(store)[0].path
    forged = first.parent / f"events-{0:020d}-{SEALED:020d}.parquet"
    shutil.copy(first, forged)
    _rewrite_segment(
        forged,
        "INSERT INTO rows SELECT * REPLACE (0 AS seq, 'forged' AS payload) FROM rows WHERE seq = 1",
    )
    assert reference_first_bad_seq(store) == 0
    assert _exact_problem_seq(store) == 0
    report = verify_store(store)
    assert report.problem is not None, "a segment with a row at seq 0 passed verify"
    assert report.problem.seq == 0


# --- 2. A row's prev_hash that takes in the start of its canonical form --------------

_STAMP = Stamp(recorded_at_us=5, mono_ns=7)
_FORGED_PAYLOAD = '"}'  # what the index and the segment show for seq 3


def _shifted_store(root: Path) -> tuple[Path, str]:
    """A store whose seq 3 was sent with a note that spells, in the canonical form, the
    fields of seq 3 before its payload, and the row's prev_hash that takes in the journal's
    canonical form up to that spelling: prev_hash || canonical form is the journal's."""
    head = b'{"type":"PING_REQUEST","tag":"t2","note":"'
    dry = _record(root.parent / "dry", {3: (head + b'x"}', _STAMP)})
    fields = record_canonical_bytes(_line(dry, 3)).split(b";", 10)[:10]
    spelled = b";".join(fields) + b";%d:" % len(_FORGED_PAYLOAD)
    _record(root, {3: (head + spelled + _FORGED_PAYLOAD.encode(), _STAMP)})
    record = _line(root, 3)
    payload = record["payload"].encode()
    assert record_canonical_bytes(record).startswith(b";".join(fields) + b";")
    before = payload[: payload.index(spelled)]
    prev = record["prev_hash"] + (b";".join(fields) + b";%d:" % len(payload) + before).decode()
    forged = dict(record, prev_hash=prev, payload=_FORGED_PAYLOAD)
    assert (prev.encode() + record_canonical_bytes(forged)) == (
        record["prev_hash"].encode() + record_canonical_bytes(record)
    )
    return root, prev


def _line(root: Path, seq: int) -> dict[str, object]:
    lines = [line for p in segment_paths(root / "journal") for line in p.open("rb")]
    return decode_canonical(lines[seq - 1])


def test_an_index_row_whose_prev_hash_takes_in_its_fields_passes(tmp_path: Path) -> None:
    """The proof compares a row's `prev_hash || canonical form` with the journal's as one
    blob (`_canonical_rows`, `_equal`), and its hash; never the row's prev_hash itself.
    The canonical form is unambiguous only after a 64-character prev_hash: a longer one
    that takes in the journal's first fields (and the start of a payload the peer sent)
    leaves a row whose fields are other values (here the payload '"}') under the same
    blob and hash. The exact report checks prev_hash against the hash of seq 2."""
    root, prev = _shifted_store(tmp_path / "store")
    with connect(root / "index.duckdb") as con:
        con.execute(
            "UPDATE event_log SET prev_hash = ?, payload = ? WHERE seq = 3", [prev, _FORGED_PAYLOAD]
        )
    assert reference_first_bad_seq(root) == 3
    assert _exact_problem_seq(root) == 3
    report = verify_store(root)
    assert report.problem is not None, "an index row with another payload passed verify"
    assert report.problem.seq == 3


def test_a_segment_row_whose_prev_hash_takes_in_its_fields_passes(tmp_path: Path) -> None:
    """The same in a sealed segment (`_segments_equal`): the live reader and the exact
    report compare the row's prev_hash with the journal's, the proof does not."""
    root, prev = _shifted_store(tmp_path / "store")
    _rewrite_segment(
        all_segments(root)[0].path,
        "UPDATE rows SET prev_hash = ?, payload = ? WHERE seq = 3",
        [prev, _FORGED_PAYLOAD],
    )
    assert reference_first_bad_seq(root) == 3
    assert _exact_problem_seq(root) == 3
    report = verify_store(root)
    assert report.problem is not None, "a segment row with another payload passed verify"
    assert report.problem.seq == 3


# --- 3. An integer beyond BIGINT in the journal --------------------------------------


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_a_journal_integer_beyond_bigint_passes_though_the_store_cannot_open(
    tmp_path: Path, value: int
) -> None:
    """decode_canonical accepts any integer orjson reads (up to 2**64 - 1), and the
    proof hashes its decimal text (`record_canonical_bytes`); the journal's columns are
    BIGINT, which the exact report (read_json) and every open of the store read them as.
    With the event not yet in the index (the journal may run ahead of it), the proof
    holds: verify says OK for a store that EventLog.open refuses as corrupt."""
    root = tmp_path / "store"
    with EventLog.open(root) as log:
        for n in range(3):
            log.record_message("s1", "client", message_bytes("PING_REQUEST", f"t{n}", n=n))
    (root / "index.duckdb").unlink()  # the journal runs ahead of the index
    (journal,) = segment_paths(root / "journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[-1])
    record["mono_ns"] = value
    record["hash"] = _reference_hash(record)
    journal.write_bytes(
        b"".join(lines[:-1]) + orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    )
    with pytest.raises(StoreCorrupt), EventLog.open(root):
        pass
    assert _exact_problem_seq(root) == 3
    report = verify_store(root)
    assert report.problem is not None, "verify passed a store that cannot be opened"
    assert report.problem.seq == 3


# --- 4. (the exact report, not the proof) a segment's rows out of order --------------


def test_a_segment_with_its_rows_out_of_order_fails_as_the_reference_says(store: Path) -> None:
    """The reference requires a segment's rows in seq order (test_verify_forgeries:
    `[row["seq"] for row in rows] != list(seqs)`). The proof finds the reversed rows
    unequal and falls back, but the exact report only counts a segment's seqs and joins
    them by seq: verify reports OK. (Older than this change: the exact report's.)"""
    path = all_segments(store)[0].path
    with connect() as con:
        source = sql_string(str(path))
        con.execute(f"CREATE TABLE rows AS SELECT * FROM read_parquet({source})")
        con.execute(f"COPY (FROM rows ORDER BY seq DESC) TO {source} (FORMAT parquet)")
    assert reference_first_bad_seq(store) == 1
    report = verify_store(store)
    assert report.problem is not None, "a segment with its rows reversed passed verify"
    assert report.problem.seq == 1


# --- 5. A crash: raw_b64 that is not ASCII ---------------------------------------------


def _rewrite_last_line(root: Path, change: dict[str, object], rehash: bool = True) -> None:
    (journal,) = segment_paths(root / "journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[-1]) | change
    if rehash:
        record["hash"] = _reference_hash(record)
    lines[-1] = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    journal.write_bytes(b"".join(lines))


@pytest.mark.parametrize("workers", [False, True])
def test_a_raw_b64_that_is_not_ascii_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: bool
) -> None:
    """`records._canonical_base64` catches binascii.Error only; base64.b64decode of a str
    with a non-ASCII character raises a plain ValueError ('string argument should
    contain only ASCII characters'), which is no RecordError: `intact._read_batch`
    (catching RecordError, UnicodeError) lets it out of verify in-process; in worker
    processes the worker dies with a traceback, and the exact report's
    `_segment_line_problem` (catching RecordError) raises it again."""
    if workers:
        monkeypatch.setattr(verify, "PARALLEL_BYTES", 0)
        monkeypatch.setattr(verify, "RANGE_BYTES", 1200)
    root = tmp_path / "store"
    with EventLog.open(root) as log:
        for n in range(EVENTS):
            log.record_message("s1", "client", message_bytes("PING_REQUEST", f"t{n}", n=n))
    _rewrite_last_line(root, {"raw_b64": "\u00e9"})
    assert reference_first_bad_seq(root) == EVENTS
    report = verify_store(root)
    assert report.problem is not None
    assert report.problem.seq == EVENTS


# --- 6. (the chain's definition) redactions joined with commas -------------------------


def test_a_journal_line_whose_redactions_changed_under_the_same_hash(tmp_path: Path) -> None:
    """The canonical form renders `redactions` as its items joined with ',' (event.py,
    chain.py): [] and [""] (or ["a", "b"] and ["a,b"]) have one canonical form, so one
    hash. A journal line's redactions changed from [] to [""] keeps every hash, passes
    verify against a checkpoint; the proof's index comparison (canonical forms) cannot
    see that the index row's [] differs from the journal's, which the reference does.
    (Older than this change: the chain's definition; the proof inherits it.)"""
    root = tmp_path / "store"
    with EventLog.open(root) as log:
        for n in range(EVENTS):
            log.record_message("s1", "client", message_bytes("PING_REQUEST", f"t{n}", n=n))
    checkpoint = verify.make_checkpoint(root)
    _rewrite_last_line(root, {"redactions": [""]}, rehash=False)
    (journal,) = segment_paths(root / "journal")
    last = orjson.loads(journal.read_bytes().splitlines()[-1])
    assert (last["redactions"], last["hash"]) == ([""], checkpoint.head_hash)  # the same hash
    assert reference_first_bad_seq(root) == EVENTS  # the index's row is not the journal's
    report = verify_store(root, against=checkpoint)
    assert report.problem is not None, "a journal line with other redactions passed verify"
    assert report.problem.seq == EVENTS


# --- 7. A crash: a damaged row group the proof's seq filter skipped --------------------


def test_a_segment_damaged_beyond_the_journal_is_named_not_a_traceback(store: Path) -> None:
    """A segment whose second row group (its statistics: seq 100) has its seq column
    damaged. The proof reads the segment `WHERE seq BETWEEN first AND last`, and DuckDB
    skips that row group by its statistics; `verify._segments_hold_their_ranges` then
    reads the seq column of every row group outside any try, and its duckdb.Error
    leaves verify_store (the exact report names the file, seq 1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = all_segments(store)[0].path
    rows = pq.read_table(path)
    seq = rows.schema.get_field_index("seq")  # after store_id
    extra = rows.slice(0, 1).set_column(seq, rows.schema.field(seq), pa.array([100], pa.int64()))
    pq.write_table(pa.concat_tables([rows, extra]), path, row_group_size=SEALED, compression="zstd")
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(seq)
    data = bytearray(path.read_bytes())
    for at in range(
        chunk.data_page_offset + 8, chunk.data_page_offset + chunk.total_compressed_size
    ):
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    assert _exact_problem_seq(store) == 1
    report = verify_store(store)
    assert report.problem is not None
    assert report.problem.seq == 1


# --- 8. (the exact report, not the proof) an index whose event_log is not the schema ---


@pytest.mark.parametrize(
    "alter",
    ["ALTER TABLE event_log DROP COLUMN tag", "ALTER TABLE event_log ALTER seq TYPE VARCHAR"],
)
def test_an_index_with_another_schema_is_named_not_a_traceback(store: Path, alter: str) -> None:
    """The proof gives up on such an index (a duckdb.Error in a worker is None); the
    exact report then builds `index_hashes` from it unchecked (`_load_hashes`: a
    BinderException; for a VARCHAR seq, `chain_problem` compares str with int: a
    TypeError). Sealed segments have `segment_problem`; the index has nothing
    alike. (Older than this change.)"""
    with connect(store / "index.duckdb") as con:
        con.execute(alter)
    report = verify_store(store)
    assert report.problem is not None
    assert report.problem.source == "index"
