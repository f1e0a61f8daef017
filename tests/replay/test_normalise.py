"""Volatile paths and the comparable form of a message (plain data)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from p3log.protocol.dialect import dialect_from_dict
from p3log.replay.normalise import (
    VOLATILE,
    JsonPath,
    VolatilePaths,
    comparable,
    decode_object,
    differences,
    first_difference,
    normalise,
)
from tests.replay.sessions import amend, login, response, signature

DEFAULT = VolatilePaths.default()


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("tag", ("tag",), True),
        ("tag", ("body", "tag"), False),
        ("**.createdTimestamp", ("createdTimestamp",), True),
        ("**.createdTimestamp", ("a", "b", 3, "createdTimestamp"), True),
        ("**.createdTimestamp", ("a", "createdTimestampX"), False),
        (
            "*.transaction.identifier",
            ("executeTransactionUpdate", "transaction", "identifier"),
            True,
        ),
        ("*.transaction.identifier", ("x", "y", "transaction", "identifier"), False),
        ("lines.1", ("lines", 1), True),
        ("lines.*", ("lines", 0), True),
        ("lines.1", ("lines", 0), False),
    ],
)
def test_path_patterns(pattern: str, path: tuple[str | int, ...], expected: bool) -> None:
    assert JsonPath.parse(pattern).matches(path) is expected


@pytest.mark.parametrize("bad", ["", " ", "a..b", ".a", "a."])
def test_a_bad_path_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a JSON path"):
        JsonPath.parse(bad)


def test_default_paths_mask_tags_clocks_ids_secrets_and_the_signature_image() -> None:
    masked = normalise(response("E"), DEFAULT)
    assert masked["tag"] == VOLATILE
    tx = masked["executeTransactionResponse"]["transaction"]
    assert tx["identifier"] == VOLATILE
    assert tx["createdTimestamp"] == VOLATILE
    assert tx["status"] == "APPROVED"
    # Receipts print the identifier as text: not a path, so kept (a replay renames it).
    assert tx["merchantReceipt"]["lines"] == ["Transaction 1d245aa41b96ace682c118d84088cbdf"]
    assert normalise(login("a", "s1"), DEFAULT) == normalise(login("b", "s2"), DEFAULT)
    assert comparable(signature("a", "AAAA"), DEFAULT) == comparable(
        signature("b", "BBBB"), DEFAULT
    )
    assert comparable(amend("a", "1" * 32), DEFAULT) == comparable(amend("b", "2" * 32), DEFAULT)


def test_a_volatile_key_must_still_be_there() -> None:
    on_receipt = {
        "type": "SUBMIT_SIGNATURE_REQUEST",
        "submitSignatureRequest": {"signOnReceipt": True},
    }
    assert comparable(signature("a"), DEFAULT) != comparable(on_receipt, DEFAULT)
    no_tag = {"type": "X_REQUEST"}
    assert comparable(no_tag, DEFAULT) != comparable({**no_tag, "tag": "t"}, DEFAULT)


def test_the_dialect_names_the_signature_and_abort_tag_keys() -> None:
    dialect = dialect_from_dict(
        {
            "signature": {"signature_key": "image"},
            "abort": {"request_type": "CANCEL_REQUEST", "tag_key": "of"},
        }
    )
    paths = {str(path) for path in VolatilePaths.default(dialect).paths}
    assert {"submitSignatureRequest.image", "cancelRequest.of"} <= paths


def test_numbers_compare_by_value_but_booleans_are_not_numbers() -> None:
    assert comparable({"a": Decimal("5.0")}, DEFAULT) == comparable({"a": 5}, DEFAULT)
    assert comparable({"a": Decimal("0.50")}, DEFAULT) == comparable({"a": Decimal("0.5")}, DEFAULT)
    assert comparable({"a": True}, DEFAULT) != comparable({"a": 1}, DEFAULT)
    assert comparable({"a": 1, "b": 2}, DEFAULT) == comparable({"b": 2, "a": 1}, DEFAULT)
    assert comparable({"a": [1, 2]}, DEFAULT) != comparable({"a": [2, 1]}, DEFAULT)


def test_adding_and_taking_out_paths() -> None:
    more = DEFAULT.adding(["**.information"])
    assert more.matches(("executeTransactionUpdate", "information"))
    fewer = DEFAULT.without(["**.referencedTransactionIdentifier"])
    assert comparable(amend("a", "1" * 32), fewer) != comparable(amend("b", "2" * 32), fewer)
    with pytest.raises(ValueError, match=r"not a volatile path \(they are: tag, "):
        DEFAULT.without(["nope"])


def test_first_difference_names_the_path_and_both_values() -> None:
    recorded = normalise({"type": "T", "b": {"list": [1, {"x": "a"}]}}, DEFAULT)
    got = normalise({"type": "T", "b": {"list": [1, {"x": "b"}]}}, DEFAULT)
    found = first_difference(recorded, got)
    assert found is not None
    assert str(found) == 'b.list[1].x: recorded "a", got "b"'
    missing = first_difference({"a": 1}, {"a": 1, "z": 2})
    assert missing is not None and str(missing) == "z: recorded <absent>, got 2"
    assert first_difference(recorded, recorded) is None


def test_decode_object_reads_lenient_json_and_nothing_but_objects() -> None:
    assert decode_object(b'{"a": 1, /* note */ "b": 2.50,}') == {"a": 1, "b": Decimal("2.50")}
    assert decode_object(b"[1]") is None
    assert decode_object(b"\xff") is None
    assert decode_object(b"{") is None


def test_differences_names_every_path_once() -> None:
    recorded = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "gone": 1}
    got = {"a": {"b": 2, "c": [1, 3, 4]}, "d": {"x": 1}, "new": True}
    assert [(d.path, d.recorded, d.got) for d in differences(recorded, got)] == [
        ("a.b", 1, 2),
        ("a.c[1]", 2, 3),
        ("a.c[2]", "<absent>", 4),
        ("d", "x", {"x": 1}),
        ("gone", 1, "<absent>"),
        ("new", "<absent>", True),
    ]
    assert differences({"n": Decimal("5.0")}, {"n": 5}) == []


def test_between_runs_also_masks_the_receipts_clock() -> None:
    paths = VolatilePaths.between_runs()
    receipt = {
        "data": {"DATE": {"value": "2026-11-27"}, "TIME": {"value": "22:50:15 UTC"}},
        "lines": ["Date 2026-11-27"],
    }
    message = {"type": "X", "t": {"transaction": {"merchantReceipt": receipt}}}
    masked = normalise(message, paths)["t"]["transaction"]["merchantReceipt"]
    assert masked == {
        "data": {"DATE": {"value": VOLATILE}, "TIME": {"value": VOLATILE}},
        "lines": VOLATILE,
    }
    assert set(DEFAULT.paths) < set(paths.paths)
