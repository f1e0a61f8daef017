"""`RecordingChannel`: the client's traffic lands in a store, as events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from p3log.client import ConnectionLost, P3Client
from p3log.net.channel import Channel
from p3log.net.recording import RecordingChannel
from p3log.sim import Rule
from p3log.store.log import EventLog
from p3log.store.read import open_store
from tests.client.simulator import charge, start_sim

SECRET = "s3cret-do-not-store-0123"


async def test_a_recorded_session(nursery: trio.Nursery, transport: str, tmp_path: Path) -> None:
    url = await start_sim(nursery, transport)
    store = tmp_path / "store"
    log = EventLog.open(store)

    def record(channel: Channel) -> Channel:
        return RecordingChannel(channel, log, "pos-1", "client")

    try:
        async with P3Client.connect(url, wrap_channel=record) as client:
            devices = await client.login("shop", SECRET)
            async with client.execute(devices[0], charge(12)) as tx:
                sale = await tx.result()
            await client.amend(
                {"type": "REFUND", "referencedTransactionIdentifier": sale.identifier}
            )
            update_count = tx.update_count
    finally:
        log.close()

    con = open_store(store)
    try:
        rows = con.execute(
            "SELECT session_id, sender, kind, msg_type, tag, resource, payload "
            "FROM events WHERE kind <> 'redaction_configured' ORDER BY seq"  # the store's
        ).fetchall()
    finally:
        con.close()
    assert {row[0] for row in rows} == {"pos-1"}
    kinds = [row[2] for row in rows]
    assert kinds[0] == "connection_opened" and kinds[-1] == "connection_closed"
    assert set(kinds[1:-1]) == {"message"}
    opened, closed = json.loads(rows[0][6]), json.loads(rows[-1][6])
    assert opened["recorded_by"] == "client"
    assert opened["transport"] == transport  # as the tap's connection_opened says it
    assert closed["by"] == "client"
    messages = [
        (sender, msg_type, tag, resource) for _, sender, _, msg_type, tag, resource, _ in rows[1:-1]
    ]
    senders = {msg_type: sender for sender, msg_type, _, _ in messages}
    assert senders["LOGIN_MERCHANT_REQUEST"] == "client"
    assert senders["EXECUTE_TRANSACTION_UPDATE"] == "server"
    assert [m[1] for m in messages].count("EXECUTE_TRANSACTION_UPDATE") == update_count
    # Each request precedes its answers, which share its tag.
    execute = next(m for m in messages if m[1] == "EXECUTE_TRANSACTION_REQUEST")
    tagged = [m[1] for m in messages if m[2] == execute[2]]
    assert tagged[0] == "EXECUTE_TRANSACTION_REQUEST"
    assert tagged[-1] == "EXECUTE_TRANSACTION_RESPONSE"
    assert execute[3] == "devices/usbReader"
    amend = next(m for m in messages if m[1] == "AMEND_TRANSACTION_REQUEST")
    assert amend[3] is None
    amend_payload = next(json.loads(r[6]) for r in rows if r[3] == "AMEND_TRANSACTION_REQUEST")
    assert "resource" in amend_payload and amend_payload["resource"] is None
    # The store redacts the merchant secret before writing anything.
    assert SECRET not in "".join(row[6] or "" for row in rows)


async def test_a_dropped_connection_is_recorded(nursery: trio.Nursery, tmp_path: Path) -> None:
    url = await start_sim(nursery, "ws", Rule(drop_connection_at="PROCESSING"))
    store = tmp_path / "store"
    with EventLog.open(store) as log:
        async with P3Client.connect(
            url, wrap_channel=lambda ch: RecordingChannel(ch, log, "pos-2", "client")
        ) as client:
            devices = await client.login("shop", "secret")
            async with client.execute(devices[0], charge(3)) as tx:
                with pytest.raises(ConnectionLost):
                    await tx.result()
    con = open_store(store)
    try:
        kind, payload = con.execute(
            "SELECT kind, payload FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        closed = con.execute(
            "SELECT count(*) FROM events WHERE kind = 'connection_closed'"
        ).fetchone()
    finally:
        con.close()
    assert kind == "connection_closed"
    details = json.loads(payload)
    assert details["by"] == "server" and details["code"] == 1011
    assert closed == (1,)  # closing the client afterwards records nothing more
