"""`p3log demo`: one P3 conversation recorded, queried, verified and checked for secrets.

Until the simulator and the tap exist, the conversation is a fixed script of the
documented signature flow, with two things a careless peer might send: the merchant
secret (on login, as always) and a full card number (a server that forgot to mask).
Both are redacted before anything reaches the store, and the demo proves it by
searching every file the store wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from p3log.render import OutputFormat, render_rows
from p3log.store.event import Sender
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.verify import make_checkpoint, verify_store

DEMO_SECRET = "demo-merchant-secret-0f9a"
DEMO_PAN = "4111111111111111"
_RESOURCE = "devices/usbReader"
_TRANSACTION = {
    "identifier": "9f86d081884c7d659a2feaa0c55ad015",
    "amount": 12.5,
    "currency": "EUR",
    "type": "CHARGE",
    "status": "PENDING",
}


def _script() -> list[tuple[Sender, object]]:
    def update(state: str, details: str, abortable: bool) -> dict[str, object]:
        return {
            "type": "EXECUTE_TRANSACTION_UPDATE",
            "tag": "tx-1",
            "resource": _RESOURCE,
            "status": "OK",
            "executeTransactionUpdate": {
                "state": state,
                "stateDetails": details,
                "information": [state.replace("_", " ").title(), ""],
                "abortable": abortable,
                "transaction": _TRANSACTION,
            },
        }

    approved = {**_TRANSACTION, "status": "APPROVED", "cardDetails": {"maskedCardNumber": DEMO_PAN}}
    return [
        (
            "client",
            {
                "type": "LOGIN_MERCHANT_REQUEST",
                "tag": "login-1",
                "loginMerchantRequest": {
                    "providerMode": "MOCK",
                    "merchantIdentifier": "demo-merchant",
                    "merchantSecret": DEMO_SECRET,
                },
            },
        ),
        (
            "server",
            {
                "type": "LOGIN_MERCHANT_RESPONSE",
                "tag": "login-1",
                "status": "OK",
                "loginMerchantResponse": {
                    "information": {"location": "Demo shop"},
                    "devices": [
                        {
                            "name": "Reader",
                            "identifier": "r1",
                            "resource": _RESOURCE,
                            "type": "MOCK",
                            "comlink": "MOCK",
                        }
                    ],
                },
            },
        ),
        (
            "client",
            {
                "type": "EXECUTE_TRANSACTION_REQUEST",
                "tag": "tx-1",
                "resource": _RESOURCE,
                "executeTransactionRequest": {
                    "transactionParameters": {
                        "amount": 12.5,
                        "currency": "EUR",
                        "type": "CHARGE",
                        "autoCapture": True,
                    }
                },
            },
        ),
        (
            "server",
            update(
                "WAITING_FOR_CARD_PRESENTATION", "PROCESSING_WAITING_FOR_CARD_PRESENTATION", True
            ),
        ),
        ("server", update("PROCESSING", "PROCESSING_ACTION_REQUIRED", False)),
        (
            "server",
            {
                "type": "EXECUTE_TRANSACTION_ACTION",
                "tag": "tx-1",
                "resource": _RESOURCE,
                "status": "OK",
                "executeTransactionAction": {"action": "SIGNATURE", "transaction": _TRANSACTION},
            },
        ),
        (
            "client",
            {
                "type": "SUBMIT_SIGNATURE_REQUEST",
                "tag": "sig-1",
                "resource": _RESOURCE,
                "submitSignatureRequest": {"signOnReceipt": True},
            },
        ),
        (
            "server",
            {
                "type": "SUBMIT_SIGNATURE_RESPONSE",
                "tag": "sig-1",
                "resource": _RESOURCE,
                "status": "OK",
                "submitSignatureResponse": {},
            },
        ),
        ("server", update("APPROVED", "APPROVED", False)),
        (
            "server",
            {
                "type": "EXECUTE_TRANSACTION_RESPONSE",
                "tag": "tx-1",
                "resource": _RESOURCE,
                "status": "OK",
                "executeTransactionResponse": {"transaction": approved},
            },
        ),
    ]


def record_demo_session(log: EventLog, session_id: str) -> None:
    log.record_lifecycle(session_id, "connection_opened", {"peer": "127.0.0.1:50312"})
    for sender, message in _script():
        log.record_message(session_id, sender, json.dumps(message).encode())
    log.record_message(session_id, "client", b'{"type": "EXECUTE_TRANSACTION_REQ')
    log.record_lifecycle(session_id, "connection_closed", {"by": "client", "code": 1000})


def run_demo(root: Path, console: Console) -> None:
    with EventLog.open(root) as log:
        session = f"demo-{log.head[0] + 1}"
        record_demo_session(log, session)
    console.print(f"recorded session [bold]{session}[/] into {root}")

    con = open_store(root)
    try:
        result = con.execute(
            "SELECT seq, sender, kind, msg_type, tag, status, redactions FROM events "
            "WHERE session_id = ? ORDER BY seq",
            [session],
        )
        columns = [column[0] for column in result.description or []]
        render_rows(console, columns, result.fetchall(), OutputFormat.table, title="events")
    finally:
        con.close()

    report = verify_store(root)
    verdict = "OK" if report.ok else f"FAILED at {report.problem}"
    console.print(f"verify {verdict}: {report.count} events, head {report.head_hash[:16]}…")
    checkpoint = make_checkpoint(root)
    console.print(f"checkpoint: {checkpoint.count} events, head {checkpoint.head_hash[:16]}…")

    files = [path for path in root.rglob("*") if path.is_file()]
    leaks = [
        path
        for path in files
        if any(s.encode() in path.read_bytes() for s in (DEMO_SECRET, DEMO_PAN))
    ]
    if leaks:
        console.print(f"[red]secret or card number found in {leaks}[/]")
    else:
        console.print(
            f"neither the merchant secret nor the card number is in any of the {len(files)} "
            "files of the store"
        )
    console.print(f'try: p3log sql --store {root} "SELECT * FROM events LIMIT 5"')
