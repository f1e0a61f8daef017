"""End to end: hostile frames and handshakes through a real `p3log tap` process, then every
file under the store, and both exports, searched for the secret and the card numbers.

DuckDB and Parquet compress what they hold, so a byte search alone could miss a value:
the index and the Parquet export are also read back, every cell of every row."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest
import trio
import trio_websocket
import wsproto
import wsproto.events

from p3log.protocol.framing import FrameDecoder, encode_frame
from tests.store.redact_hostile import assert_hidden, unescaped
from tests.tap.conftest import start_tap, websocket_upstream
from tests.tap.test_tap_tcp import tcp_echo_upstream

pytestmark = pytest.mark.slow

SECRET = "tap-s3cr3t~Q9"
TOKEN = "tok-zz81x"
PAN = "4111111111111111"
PAN_GROUPED = "5500 0000 0000 0004"
KEY = "merchant\\u0053ecret"
DIGIT = "\\u0034111111111111111"

HOSTILE: list[bytes] = [
    # a real public client: the secret as identifier too, before the key
    json.dumps(
        {
            "type": "LOGIN_MERCHANT_REQUEST",
            "tag": "l1",
            "loginMerchantRequest": {"merchantIdentifier": SECRET, "merchantSecret": SECRET},
        }
    ).encode(),
    f'{{"type": "X", "tag": "t1", "{KEY}": "{SECRET}", "n": "{DIGIT}",}}'.encode(),
    f'{{"type": "X", /* c */ "Merchant_Secret": "{SECRET}", "n": {PAN}}}'.encode(),
    f'[{{"{KEY}": "{SECRET}"}}, "{DIGIT}", {PAN}.0, 4.111111111111111e15]'.encode(),
    f'"{DIGIT}"'.encode(),
    ("[" * 3000 + f'{{"{KEY}": "{SECRET}", "n": "{DIGIT}"}}' + "]" * 3000).encode(),
    b'\xff{"' + KEY.encode() + b'": "' + SECRET.encode() + b'", "n": "' + PAN.encode() + b'"}',
    json.dumps({"type": "X", "note": json.dumps({"merchantSecret": SECRET})}).encode(),
    json.dumps({"type": "X", "tag": SECRET, "note": f"card {PAN_GROUPED}"}).encode(),
    ("1 2 3 " * 40_000 + PAN).encode(),  # digit groups: masked whole, within the budget
]


def search_everything(store: Path, exports: list[Path]) -> int:
    """Search every file under the store and the exports; returns how many files."""
    files = [p for root in (store, *exports) for p in [root, *root.rglob("*")] if p.is_file()]
    texts = [path.read_bytes().decode("latin-1") for path in files]
    # The journal and the JSONL export hold raw bytes as base64: read them decoded too.
    for path in (p for p in files if p.suffix == ".jsonl"):
        for line in path.read_text().splitlines():
            if encoded := json.loads(line).get("raw_b64"):
                texts.append(base64.b64decode(encoded).decode("latin-1"))
    with duckdb.connect(str(store / "index.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT * FROM events").fetchall()
    texts += [str(cell) for row in rows for cell in row]
    parquet = exports[1] / "events" / "**" / "*.parquet"
    with duckdb.connect() as con:
        query = f"SELECT * FROM read_parquet('{parquet}', union_by_name = true)"
        rows = con.execute(query).fetchall()
    texts += [str(cell) for row in rows for cell in row]
    assert len(texts) > 100
    for text in texts:
        assert_hidden(unescaped(text), SECRET, PAN)
        assert_hidden(unescaped(text), TOKEN, PAN_GROUPED.replace(" ", ""))
    return len(files)


def export_both(store: Path, tmp_path: Path) -> list[Path]:
    jsonl, parquet = tmp_path / "export.jsonl", tmp_path / "export-parquet"
    for args in (["--to", str(jsonl)], ["--format", "parquet", "--to", str(parquet)]):
        done = subprocess.run(
            [sys.executable, "-m", "p3log", "export", "--store", str(store), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    return [jsonl, parquet]


def recorded_rules(store: Path) -> set[str]:
    with duckdb.connect(str(store / "index.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT DISTINCT unnest(redactions) FROM events").fetchall()
    return {row[0] for row in rows}


async def test_hostile_websocket_frames_and_handshake_leave_nothing_at_rest(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    query = f"merchantSecret={quote(SECRET, safe='')}&access_token={TOKEN}&card={PAN}"
    headers = [
        (b"X-Merchant-Secret", SECRET.encode()),
        (b"X-Auth-Token", TOKEN.encode()),
        (b"Authorization", b"Bearer " + TOKEN.encode()),
        (b"Cookie", b"sid=" + TOKEN.encode()),
    ]
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            async with trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{tap.port}/p3?{query}",
                subprotocols=[TOKEN],
                extra_headers=headers,
                max_message_size=4 * 1024 * 1024,
            ) as ws:
                for frame in HOSTILE:
                    text = frame.decode("utf-8", "surrogateescape")
                    await ws.send_message(frame if "\udcff" in text else text)
                    with trio.fail_after(20):
                        await ws.get_message()
        finally:
            assert tap.stop() == 0

    assert search_everything(store, export_both(store, tmp_path)) >= 4
    rules = recorded_rules(store)
    assert {"merchant_secret", "secret_reuse", "pan", "handshake_credential"} <= rules
    assert "escapes_decoded" in rules


async def test_hostile_tcp_frames_leave_nothing_at_rest(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with tcp_echo_upstream() as upstream_port:
        tap = start_tap(store, f"tcp://127.0.0.1:{upstream_port}", "--transport", "tcp")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
            decoder = FrameDecoder()
            for frame in HOSTILE:
                await stream.send_all(encode_frame(frame))
                with trio.fail_after(20):
                    while decoder.next_frame() is None:
                        decoder.receive_data(await stream.receive_some(1 << 20))
            await stream.aclose()
        finally:
            assert tap.stop() == 0

    assert search_everything(store, export_both(store, tmp_path)) >= 4
    assert {"merchant_secret", "secret_reuse", "pan", "escapes_decoded"} <= recorded_rules(store)


async def raw_websocket_session(port: int, target: str, frames: list[bytes]) -> None:
    """A WebSocket client that sends `target` as it is (a fragment included, which URL
    clients drop), then each frame as text, waiting for its echo."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(ws.send(wsproto.events.Request(host="127.0.0.1", target=target)))
    pending = list(frames)
    with trio.fail_after(20):
        while True:
            data = await stream.receive_some(1 << 20)
            assert data, "the tap hung up"
            ws.receive_data(data)
            for event in ws.events():
                assert not isinstance(event, wsproto.events.RejectConnection), event
                if isinstance(event, wsproto.events.AcceptConnection | wsproto.events.Message):
                    if not pending:
                        await stream.send_all(ws.send(wsproto.events.CloseConnection(1000)))
                        await stream.aclose()
                        return
                    text = pending.pop(0).decode()
                    await stream.send_all(ws.send(wsproto.events.TextMessage(text)))


async def test_a_fragment_and_backslashes_that_start_no_escape_leave_nothing_at_rest(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    frames = [
        # lenient JSON: a line comment ending in a backslash, `\*/` ending a block comment
        b'{"type": "X", // c \\\n"merchantSecret": "' + SECRET.encode() + b'"}',
        b'{"type": "X", /* a \\*/ "merchant_secret": "' + SECRET.encode() + b'" /* */}',
        b'{"type": "X", "n": "\\' + PAN.encode() + b'"}',  # no escape: not JSON
    ]
    async with websocket_upstream() as upstream_port:
        tap = start_tap(store, f"ws://127.0.0.1:{upstream_port}/")
        try:
            await raw_websocket_session(tap.port, f"/p3#merchantSecret={SECRET}", frames)
        finally:
            assert tap.stop() == 0

    assert search_everything(store, export_both(store, tmp_path)) >= 4
    assert {"merchant_secret", "pan", "handshake_credential"} <= recorded_rules(store)


async def test_utf16_json_and_an_escaped_solidus_over_tcp_leave_nothing_at_rest(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    secret = SECRET + "/x"
    login = {"type": "LOGIN_MERCHANT_REQUEST", "tag": "l1", "merchantSecret": secret}
    frames = [
        json.dumps(login).encode(),
        # the secret again with `\/` for `/`, which JSON readers read as `/`
        json.dumps({"type": "X", "tag": secret}).replace("/", "\\/").encode(),
        # RFC 7159 JSON in UTF-16 and UTF-32, which `json.loads` of bytes reads
        json.dumps({"type": "X", "merchantSecret": SECRET, "n": PAN}).encode("utf-16"),
        json.dumps({"type": "X", "note": f"card {PAN}"}).encode("utf-32-le"),
    ]
    async with tcp_echo_upstream() as upstream_port:
        tap = start_tap(store, f"tcp://127.0.0.1:{upstream_port}", "--transport", "tcp")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", tap.port)
            decoder = FrameDecoder()
            for frame in frames:
                await stream.send_all(encode_frame(frame))
                with trio.fail_after(20):
                    while decoder.next_frame() is None:
                        decoder.receive_data(await stream.receive_some(1 << 20))
            await stream.aclose()
        finally:
            assert tap.stop() == 0

    exports = export_both(store, tmp_path)
    assert search_everything(store, exports) >= 4
    raws = []
    for line in (exports[0]).read_text().splitlines():
        if encoded := json.loads(line).get("raw_b64"):
            raws.append(base64.b64decode(encoded))
    wide = [raw.decode(encoding, "replace") for raw in raws for encoding in ("utf-16", "utf-32")]
    for text in [*wide, *(raw.decode("latin-1") for raw in raws)]:
        assert_hidden(unescaped(text), secret, PAN)
        assert_hidden(unescaped(text), SECRET, PAN)
    with duckdb.connect(str(store / "index.duckdb"), read_only=True) as con:
        tags = [row[0] for row in con.execute("SELECT tag FROM events").fetchall()]
    assert secret not in tags
