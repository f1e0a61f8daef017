"""TLS on both legs: the tap serves wss:// and verifies a wss:// upstream."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import trio
import trio_websocket
import trustme

from p3log.store.read import open_store
from tests.tap.conftest import close_reason, echo, start_tap


async def test_wss_in_and_out_with_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def accept(request: trio_websocket.WebSocketRequest) -> None:
        await echo(await request.accept())

    async with trio.open_nursery() as nursery:
        upstream = await nursery.start(
            partial(trio_websocket.serve_websocket, accept, "127.0.0.1", 0, server_context)
        )
        tap = start_tap(
            tmp_path / "store",
            f"wss://127.0.0.1:{upstream.port}/",
            "--tls-cert",
            str(cert_file),
            "--tls-key",
            str(key_file),
            "--upstream-ca",
            str(ca_file),
        )
        try:
            assert "listening on wss://" in tap.banner
            async with trio_websocket.open_websocket_url(
                f"wss://127.0.0.1:{tap.port}/", ssl_context=client_context
            ) as ws:
                await ws.send_message('{"type":"PING_REQUEST","tag":"tls"}')
                assert "tls" in str(await ws.get_message())
        finally:
            assert tap.stop() == 0
        nursery.cancel_scope.cancel()
    con = open_store(tmp_path / "store")
    try:
        kinds = [row[0] for row in con.execute("SELECT kind FROM events ORDER BY seq").fetchall()]
    finally:
        con.close()
    assert kinds[:4] == ["connection_opened", "upstream_connected", "message", "message"]


async def test_an_upstream_with_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def accept(request: trio_websocket.WebSocketRequest) -> None:
        await echo(await request.accept())

    async with trio.open_nursery() as nursery:
        upstream = await nursery.start(
            partial(trio_websocket.serve_websocket, accept, "127.0.0.1", 0, server_context)
        )
        tap = start_tap(tmp_path / "store", f"wss://127.0.0.1:{upstream.port}/")
        try:
            async with trio_websocket.open_websocket_url(tap.ws_url) as ws:
                reason = await close_reason(ws, timeout=30)
                assert reason.code == 1011
                assert "unavailable" in (reason.reason or "")
        finally:
            assert tap.stop() == 0
        nursery.cancel_scope.cancel()
    con = open_store(tmp_path / "store")
    try:
        rows = con.execute("SELECT kind FROM events WHERE sender <> 'tap'").fetchall()
    finally:
        con.close()
    assert rows == []  # nothing reached, or came from, the unverified server
