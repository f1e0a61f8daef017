"""Dialect files: defaults are docs/protocol.md's default dialect; mistakes are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p3log.protocol.dialect import (
    DEFAULT_DIALECT,
    Dialect,
    DialectError,
    dialect_from_dict,
    dialect_to_dict,
)


def test_the_default_is_protocol_md_default_dialect() -> None:
    assert DEFAULT_DIALECT.tcp.framing == "u32be"
    assert DEFAULT_DIALECT.tcp.max_frame_bytes == 1024 * 1024
    assert DEFAULT_DIALECT.abort.request_type == "ABORT_TRANSACTION_REQUEST"
    assert DEFAULT_DIALECT.abort.response_type == "ABORT_TRANSACTION_RESPONSE"
    assert DEFAULT_DIALECT.abort.correlation == "session_resource"
    assert DEFAULT_DIALECT.abort.not_abortable_error == "TRANSACTION_NO_LONGER_ABORTABLE"
    assert (DEFAULT_DIALECT.action.action_key, DEFAULT_DIALECT.action.signature_action) == (
        "action",
        "SIGNATURE",
    )
    assert (DEFAULT_DIALECT.signature.signature_key, DEFAULT_DIALECT.signature.on_receipt_key) == (
        "signature",
        "signOnReceipt",
    )
    assert (
        DEFAULT_DIALECT.error.type_key,
        DEFAULT_DIALECT.error.source_key,
        DEFAULT_DIALECT.error.message_key,
    ) == ("type", "source", "message")


def test_a_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        'lenient_json = true\n[tcp]\nframing = "u16le"\n[abort]\ncorrelation = "body_tag"\n'
    )
    dialect = Dialect.from_toml(path)
    assert dialect.lenient_json is True
    assert dialect.tcp.framing == "u16le"
    assert dialect.tcp.max_frame_bytes == DEFAULT_DIALECT.tcp.max_frame_bytes
    assert dialect.abort.correlation == "body_tag"
    assert dialect.action == DEFAULT_DIALECT.action


def test_the_documented_example_file_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "dialect.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.toml"
    path.write_text(example)
    assert Dialect.from_toml(path) == DEFAULT_DIALECT


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[tcp]\nframing = 'u24be'\n", "tcp.framing: expected one of u32be, u32le, u16be"),
        ("[tcpp]\nframing = 'u32be'\n", "unknown key(s) tcpp"),
        ("[tcp]\nmax_frame_bytes = '1024'\n", "tcp.max_frame_bytes: expected int, got str"),
        ("[tcp]\nmax_frame_bytes = 0\n", "must be >= 1"),
        ("lenient_json = 1\n", "expected bool, got int"),
        ("[abort\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(DialectError) as caught:
        Dialect.from_toml(path)
    message = str(caught.value)
    assert problem in message
    assert "\n" not in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DialectError, match=r"cannot read dialect file .*nope.toml"):
        Dialect.from_toml(tmp_path / "nope.toml")


def test_a_dialect_written_as_plain_data_reads_back_the_same(tmp_path: Path) -> None:
    """`projection_meta` stores the dialect through the settings converter, the one that
    reads it back: every value survives JSON, exact numbers and strings included."""
    path = tmp_path / "dialect.toml"
    path.write_text('[tcp]\nframing = "u16le"\nmax_frame_bytes = 4096\n')
    dialect = Dialect.from_toml(path)
    data = json.loads(json.dumps(dialect_to_dict(dialect)))
    assert dialect_from_dict(data) == dialect != DEFAULT_DIALECT
