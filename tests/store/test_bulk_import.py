"""The bulk path of `p3log import` journals exactly what recording each event would.

`import_jsonl` seals events in batches into an incoming segment, one write(2) per
batch; `EventLog.record_imported` records one event at a time into the live
journal. Into copies of one store, the two must write the same bytes, for hostile
events too, and leave no secret at rest.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p3log.store.errors import ImportFileError, StoreError
from p3log.store.journal import IncomingSegment, segment_paths
from p3log.store.log import EventLog
from p3log.store.records import decode_body, decode_canonical, decode_event, decode_line
from p3log.store.transfer import import_jsonl
from p3log.store.verify import verify_store
from tests.processes import run_p3log
from tests.store.redact_hostile import PANS, SECRETS, assert_hidden, hostile_documents, texts_of


def journal_bytes(root: Path) -> bytes:
    return b"".join(path.read_bytes() for path in segment_paths(root / "journal"))


def store_files(root: Path) -> dict[Path, bytes]:
    """The record: the journal (incoming/ included) and store.json. (The index is
    derived, and a writer that opens the store may checkpoint it.)"""
    kept = [root / "store.json", *(root / "journal").rglob("*")]
    return {path: path.read_bytes() for path in sorted(kept) if path.is_file()}


def record_each(root: Path, source: Path) -> int:
    """The per-event reference: each line of `source` recorded on its own."""
    with EventLog.open(root) as log:
        lines = [line for line in source.read_bytes().splitlines() if line.strip()]
        for line in lines:
            log.record_imported(decode_body(decode_line(line)))
    return len(lines)


def twin_stores(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of one new store: same id, same fingerprint key."""
    bulk, each = tmp_path / "bulk", tmp_path / "each"
    EventLog.open(bulk).close()
    shutil.copytree(bulk, each)
    return bulk, each


def line(session: str, sender: str, kind: str, n: int, **fields: object) -> bytes:
    record = {
        "session_id": session,
        "sender": sender,
        "kind": kind,
        "recorded_at_us": 1_764_280_000_000_000 + n,
        "mono_ns": 1_000 + n,
        "redaction_policy": "p3log-redact/2",
        "redactions": [],
        **fields,
    }
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def wire_line(session: str, sender: str, n: int, data: bytes) -> bytes:
    """A wire event as an export of a store that did not redact holds it."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return line(
            session, sender, "message", n, payload=None, raw_b64=base64.b64encode(data).decode()
        )
    return line(session, sender, "message", n, payload=text, raw_b64=None)


def login(secret: str) -> bytes:
    return orjson.dumps({"type": "LOGIN_MERCHANT_REQUEST", "tag": "1", "merchantSecret": secret})


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_the_bulk_path_journals_the_bytes_the_per_event_path_does(
    tmp_path: Path, workers: int
) -> None:
    # Large enough for several write(2)s of the incoming segment, with sessions that
    # log in (a fingerprint, so the store's configuration is recorded first), reuse
    # the secret later and end.
    secret = "s3cr3t-€-passphrase"
    lines = []
    for n in range(9000):
        session = f"s{n % 7}"
        if n % 500 < 7:
            data = login(secret)
        elif n % 500 == 499:  # the session logs in again next
            lines.append(line(session, "tap", "connection_closed", n, payload="{}"))
            continue
        else:
            data = orjson.dumps(
                {"type": "X", "tag": str(n), "note": secret * (n % 3), "pad": "x" * 900}
            )
        lines.append(wire_line(session, "client", n, data))
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    assert source.stat().st_size > 2 * IncomingSegment.WRITE_BYTES

    bulk, each = twin_stores(tmp_path)
    assert import_jsonl(bulk, source, workers=workers) == record_each(each, source) == 9000
    assert journal_bytes(bulk) == journal_bytes(each)
    assert secret.encode() not in journal_bytes(bulk)
    assert verify_store(bulk).ok


@st.composite
def hostile_files(draw: st.DrawFn) -> tuple[bytes, list[str], list[str]]:
    """Interleaved sessions of hostile messages and lifecycle details; their secrets."""
    lines: list[bytes] = []
    secrets: list[str] = []
    pans: list[str] = []
    for n in range(draw(st.integers(1, 6))):
        session = draw(st.sampled_from(["a", "b", "c"]))
        kind = draw(st.sampled_from(["wire", "lifecycle", "end"]))
        if kind == "wire":
            messages, secret, pan = draw(hostile_documents())
            for data in messages:
                lines.append(
                    wire_line(session, draw(st.sampled_from(["client", "server"])), n, data)
                )
        elif kind == "lifecycle":
            secret, pan = draw(SECRETS), draw(PANS)
            details = {
                "headers": [["x-merchant-secret", secret]],
                "merchantSecret": secret,
                "pan": pan,
            }
            lines.append(
                line(session, "tap", "connection_opened", n, payload=orjson.dumps(details).decode())
            )
        else:
            secret = pan = None
            lines.append(line(session, "tap", "connection_closed", n, payload="{}"))
        secrets += [secret] if secret else []
        pans += [pan] if pan else []
    return b"".join(lines), secrets, pans


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(hostile_files(), st.sampled_from([0, 2]))
def test_hostile_events_journal_alike_both_ways_and_no_secret_is_at_rest(
    tmp_path_factory: pytest.TempPathFactory,
    file: tuple[bytes, list[str], list[str]],
    workers: int,
) -> None:
    content, secrets, pans = file
    tmp_path = tmp_path_factory.mktemp("hostile")
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    bulk, each = twin_stores(tmp_path)
    assert import_jsonl(bulk, source, workers=workers) == record_each(each, source)
    journal = journal_bytes(bulk)
    assert journal == journal_bytes(each)
    for record in journal.splitlines(keepends=True):
        body = decode_event(decode_canonical(record)).body
        for secret in secrets:
            assert_hidden(texts_of(body), secret, None)
        for pan in pans:
            assert_hidden(texts_of(body), None, pan)


def test_a_bad_line_in_the_middle_of_a_large_file_imports_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    EventLog.open(root).close()
    before = store_files(root)
    pad = "x" * 1000
    lines = [
        wire_line("s", "client", n, orjson.dumps({"type": "X", "pad": pad})) for n in range(10_000)
    ]
    lines[5000] = b'{"session_id": "s", "sender": "nobody"}\n'
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    with pytest.raises(ImportFileError, match=r"in.jsonl:5001: .*nothing was imported"):
        import_jsonl(root, source)
    assert store_files(root) == before


def test_a_full_disk_mid_import_is_one_plain_error_and_changes_nothing(tmp_path: Path) -> None:
    """A real `p3log import` whose writes fail past 2 MiB (RLIMIT_FSIZE: EFBIG, as a
    full disk fails them with ENOSPC)."""
    root = tmp_path / "store"
    EventLog.open(root).close()
    before = store_files(root)
    lines = [
        wire_line("s", "client", n, orjson.dumps({"type": "X", "pad": "x" * 1000}))
        for n in range(8000)
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    done = run_p3log("import", "--store", root, source, file_size_limit=2 * 1024 * 1024)
    assert done.returncode == 2, done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert "cannot write the journal" in errors[0] and "nothing was imported" in errors[0]
    assert store_files(root) == before


@pytest.mark.parametrize("workers", [0, 2])
def test_an_event_refused_in_a_worker_stops_the_import_and_changes_nothing(
    tmp_path: Path, workers: int
) -> None:
    """This store's own configuration, in a session a worker redacts: refused as in one
    process, at that event, with the same one line."""
    root = tmp_path / "store"
    with EventLog.open(root) as log:
        log.record_message("login", "client", login("a-secret"))  # configuration first
    own = next(
        record
        for record in journal_bytes(root).splitlines(keepends=True)
        if b'"redaction_configured"' in record
    )
    moved = orjson.loads(own) | {"session_id": "elsewhere"}
    lines = [wire_line(f"s{n % 3}", "client", n, b'{"type":"X"}') for n in range(200)]
    lines.insert(100, orjson.dumps(moved, option=orjson.OPT_APPEND_NEWLINE))
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    before = store_files(root)
    with pytest.raises(StoreError, match="the file holds this store's own redaction config"):
        import_jsonl(root, source, workers=workers)
    assert store_files(root) == before
