"""The fold, the diff and the client read one transcript by one set of rules.

A single transcript (the bytes the client and a scripted server exchanged) is read
by the client (its violations), by the fold (its rows and findings) and by the
diff (its operations and latency steps): they must name the same transaction for
an abort and a signature, and the same rules for the same stray messages, even
under a dialect whose abort is not called `*_REQUEST`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import trio

from p3log.client import P3Client
from p3log.projections import Projector
from p3log.projections.observed import Observed
from p3log.projections.rows import TABLES
from p3log.protocol.dialect import AbortRules, Dialect
from p3log.protocol.rules import Rule
from p3log.replay.diff import latency_samples, operations
from p3log.replay.recording import RecordedMessage, RecordedSession
from tests.client.scripted import ScriptedPeer, login_response

CANCEL = Dialect(
    abort=AbortRules(request_type="CANCEL_PAYMENT", response_type="CANCEL_PAYMENT_ACK")
)
READER = "devices/r"
SESSION = "s1"


def _transcript_events(
    transcript: list[tuple[str, bytes]], dialect: Dialect
) -> tuple[list[Observed], RecordedSession]:
    """The transcript as the fold's events and as the diff's recorded session."""
    events, messages = [], []
    for seq, (sender, data) in enumerate(transcript, 1):
        at_us = 1_000_000 + seq * 1000
        events.append(
            Observed.of_message(
                seq, SESSION, sender, "message", at_us, data.decode(), None, dialect
            )
        )
        payload: dict[str, Any] = json.loads(data, parse_float=Decimal)
        messages.append(
            RecordedMessage(
                seq=seq,
                sender=sender,  # type: ignore[arg-type]
                kind="message",
                msg_type=payload.get("type"),
                tag=payload.get("tag"),
                resource=payload.get("resource"),
                at_ns=at_us * 1000,
                payload=payload,
                raw=data,
            )
        )
    return events, RecordedSession(SESSION, tuple(messages))


def _fold(events: list[Observed], dialect: Dialect) -> dict[str, list[Any]]:
    projector = Projector(dialect)
    projector.feed_all(events)
    changes = projector.take_changes()
    return {table.name: changes.get(table, []) for table in TABLES}


def _tags(transcript: list[tuple[str, bytes]]) -> list[tuple[str, str | None, str | None]]:
    found = []
    for sender, data in transcript:
        message = json.loads(data)
        found.append((sender, message.get("type"), message.get("tag")))
    return found


async def _cancel_through_the_client() -> tuple[P3Client, list[tuple[str, bytes]], str]:
    """An execute the client cancels under CANCEL, then two stray messages."""
    peer = ScriptedPeer()

    async def server() -> None:
        login = await peer.next_request()
        await peer.server_sends(**login_response(login["tag"]))
        execute = await peer.next_request()
        tag = execute["tag"]
        await peer.server_sends(
            type="EXECUTE_TRANSACTION_UPDATE",
            tag=tag,
            resource=READER,
            executeTransactionUpdate={"state": "WAITING_FOR_CARD", "abortable": True},
        )
        cancel = await peer.next_request()
        assert cancel["type"] == "CANCEL_PAYMENT"
        await peer.server_sends(type="CANCEL_PAYMENT_ACK", tag=cancel["tag"], status="OK")
        done = {"transaction": {"status": "ABORTED", "identifier": "t-1"}}
        await peer.server_sends(
            type="EXECUTE_TRANSACTION_RESPONSE",
            tag=tag,
            resource=READER,
            status="OK",
            executeTransactionResponse=done,
        )
        late = {"state": "ABORTED", "abortable": False}
        await peer.server_sends(
            type="EXECUTE_TRANSACTION_UPDATE", tag=tag, executeTransactionUpdate=late
        )
        await peer.server_sends(type="CANCEL_PAYMENT_ACK", tag="nobody-asked", status="OK")

    async with P3Client.over(peer, dialect=CANCEL) as client, trio.open_nursery() as nursery:
        nursery.start_soon(server)
        with trio.fail_after(5):
            await client.login("m", "s")
            async with client.execute(READER, {"amount": 1, "currency": "EUR"}) as tx:
                async for event in tx:
                    if getattr(event, "abortable", False):
                        assert (await tx.abort()).type == "CANCEL_PAYMENT_ACK"
                assert (await tx.result()).status == "ABORTED"
            while len(client.violations) < 2:
                await trio.sleep(0.001)
    return client, peer.transcript, tx.tag


async def test_a_cancel_payment_dialect_is_read_alike_by_client_fold_and_diff() -> None:
    client, transcript, execute_tag = await _cancel_through_the_client()
    events, session = _transcript_events(transcript, CANCEL)
    rows = _fold(events, CANCEL)
    sent = _tags(transcript)
    cancel_seq = next(i for i, m in enumerate(sent, 1) if m[1] == "CANCEL_PAYMENT")
    ack_seq = cancel_seq + 1

    # The fold: the cancel is an abort of the execute, answered by its ACK.
    (txn,) = rows["transactions"]
    assert txn.tag == execute_tag and txn.abort_requested and txn.outcome == "ABORTED"
    (abort,) = rows["aborts"]
    assert (abort.transaction_key, abort.request_seq, abort.response_seq) == (
        txn.transaction_key,
        cancel_seq,
        ack_seq,
    )
    assert abort.was_abortable and abort.response_status == "OK"
    latency_steps = {(row.request_type, row.step) for row in rows["latencies"]}
    assert ("CANCEL_PAYMENT", "response") in latency_steps

    # The diff: the same cancel under the same execute, with the same steps.
    by_key = {op.key: op for op in operations(session, CANCEL)}
    cancel_op = by_key["EXECUTE_TRANSACTION_REQUEST #1 / CANCEL_PAYMENT #1"]
    assert cancel_op.parent == "EXECUTE_TRANSACTION_REQUEST #1"
    assert by_key[cancel_op.parent].messages[0].tag == txn.tag
    assert [m.seq for m in cancel_op.messages] == [cancel_seq, ack_seq]
    diff_steps = {(s.msg_type, s.step) for s in latency_samples(session, CANCEL)}
    assert {step for step in latency_steps if step[1] != "action"} == diff_steps

    # The client and the fold: the same stray messages, under the same rule names.
    findings = [(row.seq, row.rule) for row in rows["protocol_findings"]]
    strays = [
        (next(i for i, (sender, data) in enumerate(transcript, 1) if data == v.data), v.rule)
        for v in client.violations
    ]
    assert findings == strays
    assert [rule for _, rule in findings] == [Rule.MESSAGE_AFTER_RESPONSE, Rule.UNKNOWN_TAG]


def _msg(sender: str, **message: Any) -> tuple[str, bytes]:
    return sender, json.dumps(message).encode()


def test_a_signature_belongs_to_the_execute_whose_action_waits_in_fold_and_diff() -> None:
    # e1's action waits; e2 is sent while e1 runs (and never gets an update); the
    # signature answers e1's action, although e2 is the latest execute on the reader.
    params = {"transactionParameters": {"amount": 1, "currency": "EUR", "type": "CHARGE"}}
    transcript = [
        _msg("client", type="EXECUTE_TRANSACTION_REQUEST", tag="e1", resource=READER,
             executeTransactionRequest=params),
        _msg("server", type="EXECUTE_TRANSACTION_ACTION", tag="e1", resource=READER,
             executeTransactionAction={"action": "SIGNATURE"}),
        _msg("client", type="EXECUTE_TRANSACTION_REQUEST", tag="e2", resource=READER,
             executeTransactionRequest=params),
        _msg("client", type="SUBMIT_SIGNATURE_REQUEST", tag="s1", resource=READER,
             submitSignatureRequest={"signature": "iVBORw0KGgo="}),
        _msg("server", type="SUBMIT_SIGNATURE_RESPONSE", tag="s1", status="OK"),
    ]  # fmt: skip
    dialect = Dialect()
    events, session = _transcript_events(transcript, dialect)
    rows = _fold(events, dialect)
    (wait,) = rows["action_waits"]
    assert wait.answered_seq == 4 and wait.answer == "signature"
    waited_on = next(t for t in rows["transactions"] if t.transaction_key == wait.transaction_key)
    assert waited_on.tag == "e1"

    signature = next(op for op in operations(session, dialect) if "SUBMIT_SIGNATURE" in op.key)
    assert signature.parent == "EXECUTE_TRANSACTION_REQUEST #1"
    parent = next(op for op in operations(session, dialect) if op.key == signature.parent)
    assert parent.messages[0].tag == waited_on.tag
