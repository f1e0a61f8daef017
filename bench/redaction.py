"""Redaction cost per message, realistic and worst-case inputs, for bench/store.py.

Redaction runs on the tap's event loop, so the figure that matters is the time one
message holds it: CPU µs per message (best of a few runs) and MB/s, for the redactor
alone and for the whole door (redaction, classification, the lenient parse). With
`--baseline FILE`, an older `redact.py` is timed on the same inputs in the same run.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from messages import message

from p3log.store.capture import Door
from p3log.store.event import Stamp
from p3log.store.redact import Redactor

MIB = 1024 * 1024
_KEY = b"bench-key-0123456789abcdef"
_STAMP = Stamp(1_764_280_000_000_000, 0)


def _login() -> bytes:
    body = {"providerMode": "TEST", "merchantIdentifier": "m-1", "merchantSecret": "s3cr3t"}
    return json.dumps({"type": "LOGIN_MERCHANT_REQUEST", "tag": "1", "loginMerchantRequest": body})


def inputs() -> list[tuple[str, bytes]]:
    """(label, message): three realistic ones, then worst cases just under 1 MiB."""
    size = MIB - 64
    realistic = [
        ("realistic: transaction update, 1 KB", message(1)),
        ("realistic: login with a secret", _login().encode()),
        ("realistic: note with a card number", b'{"type":"X","note":"4111 1111 1111 1111"}'),
    ]
    worst = [
        ("1 MiB: digit groups '1 2 3 ...'", ("1 2 3 4 5 6 7 8 9 " * (size // 18)).encode()),
        ("1 MiB: digit groups in a string", json.dumps({"n": "1 2 3 " * (size // 6)}).encode()),
        ("1 MiB: nesting '[[[...'", b"[" * size),
        ("1 MiB: \\u escapes", b'{"n": "' + b"\\u0041" * (size // 6) + b'"}'),
        ("1 MiB: non-ASCII \\u escapes", b'{"n": "' + b"\\u00e9" * (size // 6) + b'"}'),
        ("1 MiB: merchantSecret keys", b"{" + b'"merchantSecret":"x",' * (size // 21) + b'"a":1}'),
        ("1 MiB: 13-digit timestamps", json.dumps([1764280000000] * (size // 15)).encode()),
        ("1 MiB: hex", json.dumps({"h": "3e5a0e" * (size // 6)}).encode()),
        ("1 MiB: plain text", json.dumps({"t": "lorem ipsum " * (size // 12)}).encode()),
        # JSON in UTF-16 is redacted as text too (a second pass over its transcoding)
        ("1 MiB: UTF-16 digit groups", json.dumps(["1 2 3 " * (size // 13)]).encode("utf-16")),
        ("1 MiB: fractions '4111…0.5'", json.dumps([4111111111111110.5] * (size // 20)).encode()),
        ("1 MiB: escapes then digits", b'{"n": "' + b"\\u1234 5678 " * (size // 16) + b'"}'),
    ]
    return realistic + worst


def _cpu_us(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best * 1e6


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("redact_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(baseline: Path | None = None) -> list[dict[str, object]]:
    redactor = Redactor(_KEY)
    door = Door(redactor)
    old = _load(baseline).Redactor(_KEY) if baseline is not None else None
    table: list[dict[str, object]] = []
    for label, data in inputs():
        repeat = 200 if len(data) < 4096 else 7
        row: dict[str, object] = {"input": label, "bytes": len(data)}
        row["redact_us"] = _cpu_us(lambda d=data: redactor.redact(d), repeat)
        row["door_us"] = _cpu_us(lambda d=data: door.wire_body("b", "client", d, _STAMP), repeat)
        if old is not None:
            row["baseline_us"] = _cpu_us(lambda d=data: old.redact(d), repeat)
        row["rules"] = ",".join(redactor.redact(data).rules) or "-"
        table.append(row)
    return table


def print_rows(table: list[dict[str, object]]) -> None:
    baseline = "baseline_us" in table[0]
    head = f"{'redaction input':<38}{'redact µs':>11}{'MB/s':>8}{'door µs':>10}"
    print(head + (f"{'baseline µs':>13}" if baseline else "") + "  rules")
    for row in table:
        size = float(str(row["bytes"]))
        redact_us, door_us = float(str(row["redact_us"])), float(str(row["door_us"]))
        line = f"{row['input']!s:<38}{redact_us:>11,.0f}{size / max(redact_us, 1):>8,.0f}"
        line += f"{door_us:>10,.0f}"
        if baseline:
            line += f"{float(str(row['baseline_us'])):>13,.0f}"
        print(f"{line}  {row['rules']}")
