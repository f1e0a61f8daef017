"""Plain-data P3 sessions for the fold: events as the projections see them.

A `Recording` hands out the global `seq` and the clock; each `SessionBuilder` on it
appends the events of one POS connection, so sessions interleave in the order a
test writes them. Every method appends one event (`login` also its response) and
returns it, so a test can name the seq and time a row must point at. Messages have
the wire shapes of docs/protocol.md's default dialect and of fixtures/sessions/*.jsonl.

    rec = Recording()
    pos = rec.session("s1")
    execute = pos.execute("t1")
    pos.update("t1", "WAITING_FOR_CARD_PRESENTATION", abortable=True)
    pos.response("t1", transaction_status="APPROVED")
    rows = project(rec.events)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from p3log.projections import Projector
from p3log.projections.observed import Observed
from p3log.projections.rows import (
    AbortRow,
    AbortWindowRow,
    ActionWaitRow,
    FindingRow,
    LatencyRow,
    TransactionRow,
    TransactionStateRow,
)
from p3log.protocol.model import body_key

USB = "devices/usbReader"
WIFI = "devices/wifiReader"
START_US = 1_795_819_815_000_000
STEP_MS = 1.0  # time between two events unless a test chooses another
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="


def ms(start: Observed, end: Observed) -> float:
    """The time between two events in milliseconds, as the projections give it."""
    return (end.at_us - start.at_us) / 1000


class Recording:
    """The events of any number of sessions, in one seq order and on one clock."""

    def __init__(self, start_us: int = START_US) -> None:
        self.events: list[Observed] = []
        self._at_us = start_us

    def session(self, session_id: str) -> SessionBuilder:
        return SessionBuilder(session_id, self)

    def append(
        self,
        session_id: str,
        sender: str,
        kind: str,
        *,
        after_ms: float,
        message: dict[str, Any] | None = None,
        payload: str | None = None,
        parse_note: str | None = None,
    ) -> Observed:
        self._at_us += round(after_ms * 1000)

        event = Observed.of_message(
            len(self.events) + 1,
            session_id,
            sender,
            kind,
            self._at_us,
            json.dumps(message) if message is not None else payload,
            parse_note,
        )
        self.events.append(event)
        return event


class SessionBuilder:
    """One POS connection. Server messages for a tag take their type (execute or
    amend) and resource from the request that opened the tag."""

    def __init__(self, session_id: str, recording: Recording | None = None) -> None:
        self.session_id = session_id
        self.recording = recording if recording is not None else Recording()
        self._operation: dict[str, str] = {}  # tag -> EXECUTE_TRANSACTION | AMEND_TRANSACTION
        self._resource: dict[str, str | None] = {}  # tag -> resource of its request

    @property
    def events(self) -> list[Observed]:
        return self.recording.events

    # --- client requests ------------------------------------------------------------

    def login(
        self, tag: str = "login", *, answered: bool = True, after_ms: float = STEP_MS
    ) -> Observed:
        """LOGIN_MERCHANT_REQUEST and (if `answered`) its response; returns the request."""
        request = self._client(
            "LOGIN_MERCHANT_REQUEST",
            tag,
            None,
            {"providerMode": "MOCK", "merchantIdentifier": "m", "merchantSecret": "[REDACTED]"},
            after_ms=after_ms,
        )
        if not answered:
            return request
        self._server(
            "LOGIN_MERCHANT_RESPONSE",
            tag,
            None,
            "OK",
            {
                "information": {"location": "test"},
                "devices": [
                    {
                        "name": "USB reader",
                        "identifier": "usbReader",
                        "resource": USB,
                        "type": "MOCK",
                        "comlink": "USB",
                    }
                ],
            },
            after_ms=STEP_MS,
        )
        return request

    def execute(
        self,
        tag: str,
        resource: str = USB,
        amount: float = 12.5,
        *,
        currency: str = "EUR",
        after_ms: float = STEP_MS,
    ) -> Observed:
        self._operation[tag], self._resource[tag] = "EXECUTE_TRANSACTION", resource
        parameters = {"amount": amount, "currency": currency, "type": "CHARGE", "autoCapture": True}
        return self._client(
            "EXECUTE_TRANSACTION_REQUEST",
            tag,
            resource,
            {"transactionParameters": parameters},
            after_ms=after_ms,
        )

    def amend(
        self,
        tag: str,
        transaction_type: str = "REFUND",
        referenced: str = "1d245aa41b96ace682c118d84088cbdf",
        amount: float | None = None,
        *,
        after_ms: float = STEP_MS,
    ) -> Observed:
        self._operation[tag], self._resource[tag] = "AMEND_TRANSACTION", None
        parameters: dict[str, Any] = {
            "type": transaction_type,
            "referencedTransactionIdentifier": referenced,
        }
        if amount is not None:
            parameters |= {"amount": amount, "currency": "EUR"}
        return self._client(
            "AMEND_TRANSACTION_REQUEST",
            tag,
            None,
            {"mode": "ONLINE", "transactionParameters": parameters},
            after_ms=after_ms,
        )

    def abort(self, tag: str, resource: str = USB, *, after_ms: float = STEP_MS) -> Observed:
        """An abort request with its own new `tag`, for the execute on `resource`."""
        return self._client("ABORT_TRANSACTION_REQUEST", tag, resource, {}, after_ms=after_ms)

    def signature(
        self,
        tag: str,
        resource: str = USB,
        on_receipt: bool = False,
        *,
        after_ms: float = STEP_MS,
    ) -> Observed:
        body: dict[str, Any] = {"signOnReceipt": True} if on_receipt else {"signature": PNG}
        return self._client("SUBMIT_SIGNATURE_REQUEST", tag, resource, body, after_ms=after_ms)

    # --- server messages ------------------------------------------------------------

    def update(
        self,
        tag: str,
        state: str,
        abortable: bool,
        *,
        transaction_status: str = "PENDING",
        after_ms: float = STEP_MS,
    ) -> Observed:
        operation = self._operation.get(tag, "EXECUTE_TRANSACTION")
        body = {
            "state": state,
            "stateDetails": f"{state}_DETAILS",
            "information": ["line one", "line two"],
            "abortable": abortable,
            "transaction": self.transaction(tag, transaction_status),
        }
        return self._server(
            f"{operation}_UPDATE", tag, self._resource.get(tag, USB), "OK", body, after_ms=after_ms
        )

    def action(self, tag: str, action: str = "SIGNATURE", *, after_ms: float = STEP_MS) -> Observed:
        body = {"action": action, "transaction": self.transaction(tag, "PENDING")}
        return self._server(
            "EXECUTE_TRANSACTION_ACTION",
            tag,
            self._resource.get(tag, USB),
            "OK",
            body,
            after_ms=after_ms,
        )

    def response(
        self,
        tag: str,
        status: str = "OK",
        transaction_status: str | None = "APPROVED",
        *,
        error_type: str | None = None,
        status_code: str | None = None,
        after_ms: float = STEP_MS,
    ) -> Observed:
        """The final response of the execute or amend with `tag`."""
        operation = self._operation.get(tag, "EXECUTE_TRANSACTION")
        body = None
        if transaction_status is not None:
            transaction = self.transaction(tag, transaction_status)
            transaction["statusDetails"] = {"code": status_code or transaction_status}
            body = {"transaction": transaction}
        return self._server(
            f"{operation}_RESPONSE",
            tag,
            self._resource.get(tag, USB),
            status,
            body,
            error_type=error_type,
            after_ms=after_ms,
        )

    def abort_response(
        self,
        tag: str,
        status: str = "OK",
        error_type: str | None = None,
        *,
        resource: str = USB,
        after_ms: float = STEP_MS,
    ) -> Observed:
        return self._server(
            "ABORT_TRANSACTION_RESPONSE",
            tag,
            resource,
            status,
            None,
            error_type=error_type,
            after_ms=after_ms,
        )

    def signature_response(
        self,
        tag: str,
        status: str = "OK",
        error_type: str | None = None,
        *,
        resource: str = USB,
        after_ms: float = STEP_MS,
    ) -> Observed:
        return self._server(
            "SUBMIT_SIGNATURE_RESPONSE",
            tag,
            resource,
            status,
            None,
            error_type=error_type,
            after_ms=after_ms,
        )

    # --- the tap --------------------------------------------------------------------

    def close(self, by: str = "client", *, after_ms: float = STEP_MS) -> Observed:
        details = {"by": by, "code": 1000 if by == "client" else 1011, "reason": ""}
        return self.recording.append(
            self.session_id,
            "tap",
            "connection_closed",
            payload=json.dumps(details),
            after_ms=after_ms,
        )

    def malformed(
        self,
        sender: str = "client",
        note: str = "not JSON: Expecting value: line 1 column 1 (char 0)",
        *,
        after_ms: float = STEP_MS,
    ) -> Observed:
        """Bytes that are not a P3 message: kept raw, with the reason in parse_note."""
        return self.recording.append(
            self.session_id, sender, "malformed", parse_note=note, after_ms=after_ms
        )

    # --- shapes ---------------------------------------------------------------------

    def identifier(self, tag: str) -> str:
        """The server's transaction identifier for the operation with `tag` (32 hex)."""
        return hashlib.md5(f"{self.session_id}/{tag}".encode()).hexdigest()

    def transaction(self, tag: str, status: str) -> dict[str, Any]:
        return {
            "identifier": self.identifier(tag),
            "amount": 12.5,
            "currency": "EUR",
            "type": "CHARGE",
            "status": status,
            "mode": "ONLINE",
            "captured": status == "APPROVED",
        }

    def _client(
        self,
        msg_type: str,
        tag: str,
        resource: str | None,
        body: dict[str, Any],
        *,
        after_ms: float,
    ) -> Observed:
        message: dict[str, Any] = {"type": msg_type, "tag": tag}
        if msg_type != "LOGIN_MERCHANT_REQUEST":
            message["resource"] = resource
        message[body_key(msg_type)] = body
        return self.recording.append(
            self.session_id, "client", "message", message=message, after_ms=after_ms
        )

    def _server(
        self,
        msg_type: str,
        tag: str,
        resource: str | None,
        status: str,
        body: dict[str, Any] | None,
        *,
        error_type: str | None = None,
        after_ms: float,
    ) -> Observed:
        message: dict[str, Any] = {"type": msg_type, "tag": tag}
        if msg_type != "LOGIN_MERCHANT_RESPONSE":
            message["resource"] = resource
        message["status"] = status
        if error_type is not None:
            message["error"] = {"type": error_type, "source": "TRANSACTION", "message": "refused"}
        if body is not None:
            message[body_key(msg_type)] = body
        return self.recording.append(
            self.session_id, "server", "message", message=message, after_ms=after_ms
        )


@attrs.frozen
class Projection:
    """The rows the fold gave for a list of events, by table."""

    transactions: list[TransactionRow]
    states: list[TransactionStateRow]
    abort_windows: list[AbortWindowRow]
    action_waits: list[ActionWaitRow]
    aborts: list[AbortRow]
    latencies: list[LatencyRow]
    findings: list[FindingRow]

    def transaction(self, request: Observed) -> TransactionRow:
        """The transaction that `request` (an execute or amend) started."""
        (row,) = (row for row in self.transactions if row.request_seq == request.seq)
        return row

    def key(self, request: Observed) -> str:
        return self.transaction(request).transaction_key

    def rules(self) -> list[tuple[str, int, str | None]]:
        """Each finding as (rule, seq, transaction_key), in the order found."""
        return [(row.rule, row.seq, row.transaction_key) for row in self.findings]


def project(events: list[Observed]) -> Projection:
    """Fold `events` from scratch and take every row."""
    projector = Projector()
    projector.feed_all(events)
    changes = {table.name: rows for table, rows in projector.take_changes().items()}
    return Projection(
        transactions=changes.get("transactions", []),
        states=changes.get("transaction_states", []),
        abort_windows=changes.get("abort_windows", []),
        action_waits=changes.get("action_waits", []),
        aborts=changes.get("aborts", []),
        latencies=changes.get("latencies", []),
        findings=changes.get("protocol_findings", []),
    )
