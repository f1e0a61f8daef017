"""No merchant secret and no full card number reaches any byte the store writes."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from p3log.projections.export import export_parquet
from p3log.store.log import EventLog
from p3log.store.transfer import export_store

SECRET = "s3cr3t-merchant-key-7781"
PAN = "4111111111111111"  # Luhn-valid test card number
PAN_SPACED = "5500 0000 0000 0004"


def _record_secrets(root: Path) -> None:
    login = {
        "type": "LOGIN_MERCHANT_REQUEST",
        "tag": "l1",
        "loginMerchantRequest": {
            "providerMode": "MOCK",
            "merchantIdentifier": "m1",
            "merchantSecret": SECRET,
        },
    }
    leaky = {
        "type": "EXECUTE_TRANSACTION_RESPONSE",
        "tag": "x1",
        "status": "OK",
        "executeTransactionResponse": {
            "transaction": {
                "cardDetails": {"maskedCardNumber": PAN},
                "subject": f"card {PAN_SPACED}",
            }
        },
    }
    with EventLog.open(root) as log:
        log.record_message("s1", "client", json.dumps(login).encode())
        log.record_message("s1", "server", json.dumps(leaky).encode())
        # the same secrets in bytes that are not JSON, and in a lifecycle detail
        log.record_message("s1", "client", f'{{"merchantSecret": "{SECRET}", {PAN} ]]'.encode())
        log.record_message("s1", "server", b"\xff\xfe not utf-8 " + PAN.encode())
        log.record_lifecycle("s1", "connection_opened", {"headers": {"x-card": PAN}})


def test_secret_and_pan_appear_in_no_file_under_the_store(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _record_secrets(root)
    export_store(root, "jsonl", root / "export.jsonl")
    export_parquet(root, root / "export")  # events and projections, partitioned

    files = [path for path in root.rglob("*") if path.is_file()]
    assert len(files) >= 6
    assert any(path.suffix == ".parquet" for path in files)
    for path in files:
        data = path.read_bytes()
        for needle in (SECRET, PAN, PAN_SPACED, PAN_SPACED.replace(" ", "")):
            assert needle.encode() not in data, f"{needle} found in {path}"


def test_no_column_of_the_index_holds_the_secret_or_pan(tmp_path: Path) -> None:
    """DuckDB compresses strings on disk, so a byte search alone could miss them."""
    root = tmp_path / "store"
    _record_secrets(root)
    with duckdb.connect(str(root / "index.duckdb"), read_only=True) as con:
        text = con.execute(
            "SELECT string_agg(CAST(columns(*) AS VARCHAR), '|') FROM events"
        ).fetchall()[0]
        assert text is not None
        blob = "|".join(str(cell) for cell in text)
    assert "merchantSecret" in blob  # the key is kept, its value is not
    for needle in (SECRET, PAN, PAN_SPACED.replace(" ", "")):
        assert needle not in blob


def test_the_rules_applied_are_recorded_with_each_event(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _record_secrets(root)
    with duckdb.connect(str(root / "index.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT seq, redaction_policy, redactions FROM events "
            "WHERE kind <> 'redaction_configured' ORDER BY seq"
        ).fetchall()
    assert all(policy.startswith("p3log-redact/") for _, policy, _ in rows)
    assert "merchant_secret" in rows[0][2]
    assert "pan" in rows[1][2]
