"""Recorded sessions as plain data for the replay tests, and fixture stores."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from p3log.protocol import jsontext
from p3log.replay.recording import RecordedClose, RecordedMessage, RecordedSession
from p3log.store.transfer import import_jsonl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MS = 1_000_000  # ns
USB = "devices/usbReader"
TX_ID = "1d245aa41b96ace682c118d84088cbdf"


class Builder:
    """Messages in recorded order; `at` in milliseconds since the connection opened."""

    def __init__(self) -> None:
        self.messages: list[RecordedMessage] = []
        self.close: RecordedClose | None = None

    def pos(self, at: float, obj: dict[str, Any]) -> Builder:
        return self._add("client", at, obj)

    def server(self, at: float, obj: dict[str, Any]) -> Builder:
        return self._add("server", at, obj)

    def server_closes(self, at: float, code: int = 1011, reason: str = "drop") -> Builder:
        self.close = RecordedClose("server", code, reason, int(at * MS))
        return self

    def _add(self, sender: str, at: float, obj: dict[str, Any]) -> Builder:
        raw = jsontext.dumps(obj).encode()
        self.messages.append(
            RecordedMessage(
                seq=len(self.messages) + 1,
                sender=sender,  # type: ignore[arg-type]
                kind="message",
                msg_type=obj.get("type"),
                tag=obj.get("tag"),
                resource=obj.get("resource"),
                at_ns=int(at * MS),
                payload=json.loads(raw, parse_float=Decimal),
                raw=raw,
            )
        )
        return self

    def build(self, session_id: str = "rec-1") -> RecordedSession:
        return RecordedSession(session_id, tuple(self.messages), 0, "ws", self.close)


def msg(
    msg_type: str, tag: str | None, body: dict[str, Any] | None = None, **envelope: Any
) -> dict[str, Any]:
    """A P3 message: type, tag, envelope keys, and the body under its camelCase key."""
    obj: dict[str, Any] = {"type": msg_type}
    if tag is not None:
        obj["tag"] = tag
    obj.update(envelope)
    if body is not None:
        head, *rest = msg_type.lower().split("_")
        obj[head + "".join(part.title() for part in rest)] = body
    return obj


def transaction(status: str = "PENDING", identifier: str = TX_ID, **more: Any) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "amount": Decimal("10.00"),
        "currency": "EUR",
        "status": status,
        "createdTimestamp": 1795819814862,
        **more,
    }


def login(tag: str, secret: str = "[REDACTED merchantSecret hmac-sha256:00]") -> dict[str, Any]:
    body = {"providerMode": "MOCK", "merchantIdentifier": "m", "merchantSecret": secret}
    return msg("LOGIN_MERCHANT_REQUEST", tag, body)


def login_ok(tag: str) -> dict[str, Any]:
    device = {"name": "USB", "identifier": "usb", "resource": USB, "type": "MOCK", "comlink": "USB"}
    return msg("LOGIN_MERCHANT_RESPONSE", tag, {"devices": [device]}, status="OK")


def execute(tag: str, amount: str = "10.00", resource: str = USB) -> dict[str, Any]:
    params = {"amount": Decimal(amount), "currency": "EUR", "type": "CHARGE", "autoCapture": True}
    return msg(
        "EXECUTE_TRANSACTION_REQUEST", tag, {"transactionParameters": params}, resource=resource
    )


def update(
    tag: str, state: str, abortable: bool = False, resource: str = USB, **tx: Any
) -> dict[str, Any]:
    body = {"state": state, "abortable": abortable, "transaction": transaction(**tx)}
    return msg("EXECUTE_TRANSACTION_UPDATE", tag, body, resource=resource, status="OK")


def action(tag: str) -> dict[str, Any]:
    body = {"action": "SIGNATURE", "transaction": transaction()}
    return msg("EXECUTE_TRANSACTION_ACTION", tag, body, resource=USB, status="OK")


def signature(tag: str, png: str = "iVBORw0KGgo=") -> dict[str, Any]:
    return msg("SUBMIT_SIGNATURE_REQUEST", tag, {"signature": png}, resource=USB)


def signature_ok(tag: str) -> dict[str, Any]:
    return msg("SUBMIT_SIGNATURE_RESPONSE", tag, resource=USB, status="OK")


def abort(tag: str) -> dict[str, Any]:
    return msg("ABORT_TRANSACTION_REQUEST", tag, {}, resource=USB)


def abort_ok(tag: str) -> dict[str, Any]:
    return msg("ABORT_TRANSACTION_RESPONSE", tag, resource=USB, status="OK")


def response(tag: str, status: str = "APPROVED", resource: str = USB, **tx: Any) -> dict[str, Any]:
    receipt = {"lines": [f"Transaction {tx.get('identifier', TX_ID)}"]}
    body = {"transaction": transaction(status, merchantReceipt=receipt, **tx)}
    return msg("EXECUTE_TRANSACTION_RESPONSE", tag, body, resource=resource, status="OK")


def amend(tag: str, reference: str = TX_ID) -> dict[str, Any]:
    params = {"type": "REFUND", "referencedTransactionIdentifier": reference}
    return msg("AMEND_TRANSACTION_REQUEST", tag, {"transactionParameters": params}, resource=None)


def amend_ok(tag: str, identifier: str = "ffff0000ffff0000ffff0000ffff0000") -> dict[str, Any]:
    body = {"transaction": transaction("APPROVED", identifier, type="REFUND")}
    return msg("AMEND_TRANSACTION_RESPONSE", tag, body, resource=None, status="OK")


def signature_flow() -> Builder:
    """Login, an execute with a signature action, signed, approved."""
    return (
        Builder()
        .pos(1, login("L"))
        .server(2, login_ok("L"))
        .pos(3, execute("E"))
        .server(4, update("E", "PROCESSING"))
        .server(9, action("E"))
        .pos(10, signature("S"))
        .server(11, signature_ok("S"))
        .server(12, update("E", "APPROVED"))
        .server(13, response("E"))
    )


def fixture_session(name: str) -> tuple[str, list[dict[str, Any]]]:
    """The main session id of fixtures/sessions/NAME.jsonl and its records."""
    records = [
        json.loads(line)
        for line in (FIXTURES / "sessions" / f"{name}.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return records[0]["session_id"], records


def fixture_store(root: Path, name: str) -> str:
    """Import fixtures/sessions/NAME.jsonl into a store at `root`; its first session's id."""
    import_jsonl(root, FIXTURES / "sessions" / f"{name}.jsonl")
    return fixture_session(name)[0]
