"""The fingerprint key lives outside the store; what governs redaction is under the chain.

A copy of a store (or an export) must not let anyone test guesses of a merchant secret
against its markers, and an edit of store.json's policy or key id, or a key swapped
for another, must be reported.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p3log.projections.export import export_parquet
from p3log.report import build_report, write_html
from p3log.store.capture import Door
from p3log.store.errors import StoreCorrupt, StoreError
from p3log.store.event import GENESIS_HASH, Stamp, seal
from p3log.store.governance import GOVERNANCE_KIND
from p3log.store.journal import segment_name
from p3log.store.keys import KEY_DIR_ENV, KEY_FILE_ENV, FingerprintKey, key_directory
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.records import encode_record
from p3log.store.redact import Redactor
from p3log.store.transfer import export_store
from p3log.store.verify import make_checkpoint, verify_store
from tests.processes import run_p3log, start_p3log_server

ROOT = Path(__file__).parents[2]
SECRET = "hunter2-merchant-secret"
_MARKER = re.compile(rb"hmac-sha256:([0-9a-f]{32})\]")
HOSTILE_IDS = ["../../../../etc/passwd", "/dev/zero", "a" * 24, "", "..", "A" * 24]


def _login(secret: str = SECRET) -> bytes:
    return json.dumps(
        {"type": "LOGIN_MERCHANT_REQUEST", "tag": "t1", "merchantSecret": secret}
    ).encode()


def _record_secret(root: Path) -> None:
    with EventLog.open(root) as log:
        log.record_message("s1", "client", _login())
        log.record_message("s1", "server", b'{"type": "LOGIN_MERCHANT_RESPONSE", "tag": "t1"}')


def _p3log(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_p3log(*argv, env={"COLUMNS": "300", **(env or {})})


def _files(*roots: Path) -> dict[Path, bytes]:
    return {
        path: path.read_bytes()
        for root in roots
        for path in ([root] if root.is_file() else sorted(root.rglob("*")))
        if path.is_file()
    }


def _store_key(root: Path) -> bytes:
    key_id = json.loads((root / "store.json").read_text())["key_id"]
    return (key_directory() / f"{key_id}.key").read_bytes()


def _edit_meta(root: Path, **changes: object) -> None:
    meta = json.loads((root / "store.json").read_text())
    (root / "store.json").write_text(json.dumps({**meta, **changes}))


def test_a_copied_store_and_its_exports_hold_no_key_material(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _record_secret(store)
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    export_store(store, "jsonl", tmp_path / "export.jsonl")
    export_parquet(store, tmp_path / "parquet")
    write_html(build_report(store), tmp_path / "report.html")
    files = _files(copy, tmp_path / "export.jsonl", tmp_path / "parquet", tmp_path / "report.html")
    markers = {m for content in files.values() for m in _MARKER.findall(content)}
    assert markers, "the secret's marker is in the store and the exports"

    key = _store_key(store)
    for encoded in (key, key.hex().encode(), base64.b64encode(key)):
        assert not [path for path, content in files.items() if encoded in content]
    # Nor does a whole file, or any of its first 200,000 32-byte windows, recompute the
    # marker (that the key is in no window at all is the substring check above).
    for content in files.values():
        candidates = [content] + [content[i : i + 32] for i in range(len(content) - 31)]
        for candidate in candidates[:200_000]:
            digest = hmac.digest(candidate, SECRET.encode(), "sha256").hex()[:32].encode()
            assert digest not in markers


def test_a_writer_with_another_key_is_refused_in_one_line_and_the_store_unchanged(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    _record_secret(store)
    export_store(store, "jsonl", tmp_path / "events.jsonl")
    other = tmp_path / "other.key"
    other.write_bytes(FingerprintKey.generate().secret)
    before = _files(store)

    done = _p3log(
        "import",
        "--store",
        str(store),
        "--redaction-key",
        str(other),
        str(tmp_path / "events.jsonl"),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "fingerprint key" in done.stderr
    assert _files(store) == before

    os.environ[KEY_FILE_ENV] = str(other)
    try:
        with pytest.raises(StoreError, match="refusing to mix fingerprints"):
            EventLog.open(store)
    finally:
        del os.environ[KEY_FILE_ENV]
    assert _files(store) == before


def test_a_new_store_uses_a_named_key_file_made_for_it(tmp_path: Path) -> None:
    named = tmp_path / "operator" / "p3log.key"
    done = _p3log(
        "import",
        "--store",
        str(tmp_path / "store"),
        "--redaction-key",
        str(named),
        str(ROOT / "fixtures" / "sessions" / "simple.jsonl"),
    )
    assert done.returncode == 0, done.stderr
    key = FingerprintKey(named.read_bytes())
    assert json.loads((tmp_path / "store" / "store.json").read_text())["key_id"] == key.id
    assert oct(named.stat().st_mode & 0o777) == "0o600"
    assert not any(key.secret in content for content in _files(tmp_path / "store").values())


def _legacy_store(root: Path, key: bytes) -> str:
    """A store as p3log wrote them before key ids: the key inside, one login recorded."""
    with EventLog.open(root):
        pass
    meta = json.loads((root / "store.json").read_text())
    del meta["key_id"]
    (root / "store.json").write_text(json.dumps(meta))
    (root / "redaction.key").write_bytes(key)
    (root / "index.duckdb").unlink()
    body = Door(Redactor(key)).wire_body("s1", "client", _login(), Stamp.now())
    (root / "journal" / segment_name(1)).write_bytes(encode_record(seal(body, 1, GENESIS_HASH)))
    marker = _MARKER.search((body.payload or "").encode())
    assert marker is not None
    return marker.group(1).decode()


def test_an_old_store_with_its_key_inside_is_migrated_by_the_first_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    key = FingerprintKey.generate()
    old_marker = _legacy_store(store, key.secret)
    assert "holds its fingerprint key" in str(verify_store(store).problem)

    with EventLog.open(store) as log:
        new = log.record_message("s2", "client", _login())
    moved = [r.getMessage() for r in caplog.records if "out of the store" in r.getMessage()]
    assert len(moved) == 1 and key.id in moved[0]
    assert not (store / "redaction.key").exists()
    assert (key_directory() / f"{key.id}.key").read_bytes() == key.secret
    assert json.loads((store / "store.json").read_text())["key_id"] == key.id
    assert old_marker in (new.body.payload or "")  # the same secret, the same fingerprint
    assert verify_store(store).ok
    con = open_store(store)
    try:
        reasons = con.execute(
            "SELECT payload->>'$.reason' FROM events WHERE kind = ?", [GOVERNANCE_KIND]
        ).fetchall()
    finally:
        con.close()
    assert reasons == [("moved out of the store",)]


@pytest.mark.parametrize(
    ("field", "value"), [("redaction_policy", "p3log-redact/0"), ("key_id", "a" * 24)]
)
def test_editing_what_governs_redaction_is_reported_by_verify_and_against_a_checkpoint(
    tmp_path: Path, field: str, value: str
) -> None:
    store = tmp_path / "store"
    _record_secret(store)
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(make_checkpoint(store).to_json())
    _edit_meta(store, **{field: value})

    plain = _p3log("verify", "--store", str(store))
    against = _p3log("verify", "--store", str(store), "--against", str(checkpoint))
    for done in (plain, against):
        assert done.returncode == 1, done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert field.replace("_", " ") in done.stderr
    with pytest.raises(StoreError, match="fingerprint key" if field == "key_id" else "policy"):
        EventLog.open(store)


def test_a_key_id_edited_before_any_fingerprint_is_reported_against_a_checkpoint(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    with EventLog.open(store) as log:
        log.record_message("s1", "client", b'{"type": "PING_REQUEST", "tag": "t1"}')
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(make_checkpoint(store).to_json())
    _edit_meta(store, key_id="b" * 24)
    done = _p3log("verify", "--store", str(store), "--against", str(checkpoint))
    assert done.returncode == 1, done.stdout
    assert "key id" in done.stderr and "checkpoint" in done.stderr


def test_a_chain_with_another_key_than_store_json_is_refused_by_the_writer(
    tmp_path: Path,
) -> None:
    """A key swapped for another (store.json and its key file both replaced)."""
    store = tmp_path / "store"
    _record_secret(store)
    swapped = FingerprintKey.generate()
    (key_directory() / f"{swapped.id}.key").write_bytes(swapped.secret)
    _edit_meta(store, key_id=swapped.id)
    with pytest.raises(StoreCorrupt, match="changed outside p3log"):
        EventLog.open(store)
    assert not verify_store(store).ok


def test_readers_need_no_key(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _record_secret(store)
    env = {KEY_DIR_ENV: str(tmp_path / "no-keys-here")}
    for argv in (
        ("verify", "--store", str(store)),
        ("sql", "--store", str(store), "SELECT count(*) FROM events"),
        ("export", "--store", str(store), "--to", str(tmp_path / "out.jsonl")),
        ("report", "--store", str(store), "--out", str(tmp_path / "report.html")),
    ):
        done = _p3log(*argv, env=env)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)


def test_a_tap_records_into_a_fresh_store_with_the_default_key_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    monkeypatch.delenv(KEY_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    store = tmp_path / "store"
    sim = start_p3log_server("sim", "--listen", "127.0.0.1:0", "--time-scale", "0.01")
    try:
        tap = start_p3log_server(
            "tap", "--listen", "127.0.0.1:0", "--upstream", sim.url, "--store", str(store)
        )
        try:
            script = str(ROOT / "fixtures" / "pos" / "simple.toml")
            done = _p3log("pos", "--url", tap.url, "--script", script)
            assert done.returncode == 0, done.stdout + done.stderr
        finally:
            assert tap.stop() == 0
    finally:
        sim.stop()
    key_id = json.loads((store / "store.json").read_text())["key_id"]
    key_file = config / "p3log" / "keys" / f"{key_id}.key"
    key = key_file.read_bytes()
    assert FingerprintKey(key).id == key_id
    assert not [path for path, content in _files(store).items() if key in content]
    assert not (store / "redaction.key").exists()
    assert verify_store(store).ok


@pytest.fixture(scope="module")
def recorded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("recorded") / "store"
    _record_secret(store)
    return store


@given(
    key_id=st.one_of(st.none(), st.text(max_size=40), st.integers(), st.sampled_from(HOSTILE_IDS))
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_hostile_key_id_in_store_json_is_refused_in_one_line(
    recorded_store: Path, key_id: object
) -> None:
    with TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(recorded_store, store)
        _edit_meta(store, key_id=key_id)
        before = _files(store)
        with pytest.raises(StoreError) as refused:
            EventLog.open(store)
        assert len(str(refused.value).splitlines()) == 1
        assert _files(store) == before


@pytest.mark.parametrize("content", [b"", b"short", b"x" * 5000, None])
def test_a_key_file_that_is_not_a_key_is_refused_in_one_line(
    tmp_path: Path, content: bytes | None
) -> None:
    named = tmp_path / "named.key"
    if content is None:
        named.mkdir()
    else:
        named.write_bytes(content)
    done = _p3log(
        "import",
        "--store",
        str(tmp_path / "store"),
        "--redaction-key",
        str(named),
        str(ROOT / "fixtures" / "sessions" / "simple.jsonl"),
    )
    assert done.returncode == 2, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1
    assert "not a fingerprint key" in done.stderr


def test_a_store_s_own_configuration_is_not_imported_into_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _record_secret(store)
    export_store(store, "jsonl", tmp_path / "own.jsonl")
    before = _files(store / "journal", store / "store.json")
    done = _p3log("import", "--store", str(store), str(tmp_path / "own.jsonl"))
    assert done.returncode == 2, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1
    assert "own redaction configuration" in done.stderr
    assert _files(store / "journal", store / "store.json") == before
    # Into another store it is history: the first store's configuration, not the new one's.
    assert _p3log("import", "--store", str(tmp_path / "other"), str(tmp_path / "own.jsonl"))
    assert verify_store(tmp_path / "other").ok


def test_an_import_that_makes_the_first_fingerprint_records_the_configuration_first(
    tmp_path: Path,
) -> None:
    """An import is one all-or-nothing batch, and keeps the writer's rule: the first event
    whose redaction used the key is preceded, in the same batch, by the configuration."""
    source = tmp_path / "hand-written.jsonl"
    login = _login().decode()
    rows = [
        {
            "session_id": "s1",
            "sender": "client",
            "kind": "message",
            "payload": login,
            "recorded_at_us": 1_700_000_000_000_000,
            "mono_ns": 1,
        },
        {
            "session_id": "s1",
            "sender": "server",
            "kind": "message",
            "payload": '{"type":"X"}',
            "recorded_at_us": 1_700_000_000_000_001,
            "mono_ns": 2,
        },
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    store = tmp_path / "store"
    done = _p3log("import", "--store", str(store), str(source))
    assert done.returncode == 0, done.stderr
    assert verify_store(store).ok
    con = open_store(store)
    try:
        kinds = [kind for (kind,) in con.execute("SELECT kind FROM events ORDER BY seq").fetchall()]
    finally:
        con.close()
    assert kinds == [GOVERNANCE_KIND, "message", "message"]
    assert all(SECRET.encode() not in data for data in _files(store).values())
