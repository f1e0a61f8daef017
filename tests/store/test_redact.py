from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p3log.store.redact import REDACTION_POLICY, Redacted, Redactor
from tests.store.redact_hostile import luhn_complete

KEY = b"store-key-0123456789abcdef"
MARKER = re.compile(rb'"\[REDACTED merchantSecret hmac-sha256:([0-9a-f]{32})\]"')


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(KEY)


def login(secret: str) -> bytes:
    body = {"providerMode": "TEST", "merchantIdentifier": "m-1", "merchantSecret": secret}
    return json.dumps({"type": "LOGIN_MERCHANT_REQUEST", "loginMerchantRequest": body}).encode()


def fingerprint_in(data: bytes) -> str:
    found = MARKER.search(data)
    assert found is not None, data
    return found.group(1).decode()


def test_policy_is_versioned() -> None:
    assert REDACTION_POLICY == "p3log-redact/2"


def test_secret_is_replaced_by_a_marker_and_gone(redactor: Redactor) -> None:
    raw = login("s3cr3t-Value")
    result = redactor.redact(raw)

    assert b"s3cr3t-Value" not in result.data
    assert fingerprint_in(result.data) == redactor.fingerprint("s3cr3t-Value")
    assert result.rules == ("merchant_secret",)
    assert MARKER.sub(b'"s3cr3t-Value"', result.data) == raw  # all else byte-identical


def test_fingerprints_tell_secrets_and_keys_apart(redactor: Redactor) -> None:
    first = fingerprint_in(redactor.redact(login("alpha")).data)

    assert fingerprint_in(redactor.redact(login("alpha")).data) == first
    assert fingerprint_in(redactor.redact(login("beta")).data) != first
    assert fingerprint_in(Redactor(b"another-store-key").redact(login("alpha")).data) != first


def test_fingerprint_covers_the_decoded_value(redactor: Redactor) -> None:
    escaped = redactor.redact(b'{"merchantSecret":"a\\u0062c"}').data

    assert fingerprint_in(escaped) == redactor.fingerprint("abc")


@pytest.mark.parametrize(
    ("raw", "redacted"),
    [
        (b'{"merchantSecret": 123456, "a": 1}', b'{"merchantSecret": "M", "a": 1}'),
        (b'{"merchantSecret":true}', b'{"merchantSecret":"M"}'),
        (b'{"merchantSecret": {"k": ["x", "}"]}, "a": 1}', b'{"merchantSecret": "M", "a": 1}'),
        # a documentation placeholder, and a frame cut short
        (b'{"merchantSecret": <the secret>, "a": 1}', b'{"merchantSecret": "M", "a": 1}'),
        (b'{"merchantSecret": "cut off', b'{"merchantSecret": "M"'),
    ],
)
def test_non_string_and_malformed_secret_values_are_replaced(
    redactor: Redactor, raw: bytes, redacted: bytes
) -> None:
    result = redactor.redact(raw)

    assert MARKER.sub(b'"M"', result.data) == redacted
    assert result.rules == ("merchant_secret",)


def test_escaped_key_spelling_is_still_redacted(redactor: Redactor) -> None:
    result = redactor.redact(b'{"t": "x", "merchant\\u0053ecret": "hidden"}')

    assert b"hidden" not in result.data
    assert json.loads(result.data) == {
        "t": "x",
        "merchantSecret": f"[REDACTED merchantSecret hmac-sha256:{redactor.fingerprint('hidden')}]",
    }
    assert result.rules == ("escapes_decoded", "merchant_secret")


def test_escaped_duplicate_key_is_not_hidden_behind_a_plain_one(redactor: Redactor) -> None:
    raw = b'{"merchant\\u0053ecret":"first","merchantSecret":"second"}'
    result = redactor.redact(raw)

    assert b"first" not in result.data
    assert b"second" not in result.data
    assert len(MARKER.findall(result.data)) == 2


@pytest.mark.parametrize(
    "raw",
    [
        login("s3cr3t"),
        b'{"merchant\\u0053ecret": "s3cr3t", "note": "4111 1111 1111 1111"}',
        b"garbage 4111111111111111 \xff",
    ],
)
def test_redaction_is_idempotent(redactor: Redactor, raw: bytes) -> None:
    once = redactor.redact(raw)
    twice = redactor.redact(once.data)

    assert once.rules
    assert twice == Redacted(once.data, ())
    assert twice.data is once.data


@pytest.mark.parametrize(
    ("card", "masked"),
    [
        ("4111111111111111", "411111******1111"),
        ("4111 1111 1111 1111", "4111 11** **** 1111"),
        ("4111-1111-1111-1111", "4111-11**-****-1111"),
        ("4222222222222", "422222***2222"),  # 13 digits
        ("6011000990139424 000", "601100******9424 000"),  # a card followed by a number
        ("qty 2 4111 1111 1111 1111", "qty 2 4111 11** **** 1111"),
    ],
)
def test_luhn_valid_card_in_a_string_is_masked_6_4(
    redactor: Redactor, card: str, masked: str
) -> None:
    result = redactor.redact(json.dumps({"note": card, "amount": 1}).encode())

    assert json.loads(result.data) == {"note": masked, "amount": 1}
    assert result.rules == ("pan",)


def test_19_digit_card_is_masked(redactor: Redactor) -> None:
    card = luhn_complete("6" * 18)
    result = redactor.redact(json.dumps({"n": card}).encode())

    assert json.loads(result.data) == {"n": "666666*********" + card[-4:]}


def test_luhn_invalid_16_digits_are_untouched(redactor: Redactor) -> None:
    raw = b'{"note": "4111111111111112"}'

    assert redactor.redact(raw) == Redacted(raw, ())


def test_20_contiguous_digits_are_an_identifier_not_a_card(redactor: Redactor) -> None:
    identifier = luhn_complete("4" * 19)
    raw = json.dumps({"reference": identifier}).encode()

    assert redactor.redact(raw) == Redacted(raw, ())


def test_card_inside_a_longer_grouped_run_is_still_found(redactor: Redactor) -> None:
    result = redactor.redact(b'{"n": "4111 1111 1111 1111 0000"}')

    assert json.loads(result.data) == {"n": "4111 11** **** 1111 0000"}


def test_plausible_timestamps_and_short_numbers_are_untouched(redactor: Redactor) -> None:
    # 1700000000004 passes the Luhn check, and is kept as the protocol's timestamp field.
    raw = b'{"createdTimestamp": 1700000000004, "amounts": [411111111111, 10.50]}'

    assert redactor.redact(raw) == Redacted(raw, ())


@pytest.mark.parametrize(
    "raw",
    [
        b'{"createdTimestamp": 4111111111111111, oops',  # not JSON
        b"4111111111111111",  # JSON, but not a P3 message (an object)
        b"4.111111111111111e15",  # the same number, as a float
        b'{"n": "\xff 4111111111111111"}',  # not UTF-8
    ],
)
def test_card_in_malformed_bytes_is_masked_anywhere(redactor: Redactor, raw: bytes) -> None:
    result = redactor.redact(raw)

    assert b"4111111111111111" not in result.data
    assert b"411111******1111" in result.data
    assert result.rules == ("pan",)


def test_unicode_escaped_card_is_masked(redactor: Redactor) -> None:
    raw = b'{"note": "\\u0034111 1111\\u00201111 1111", "type": "X"}'
    result = redactor.redact(raw)

    assert json.loads(result.data) == {"note": "4111 11** **** 1111", "type": "X"}
    assert result.rules == ("escapes_decoded", "pan")


def test_only_ascii_escapes_are_decoded_and_all_else_stays_as_it_arrived(
    redactor: Redactor,
) -> None:
    raw = b'{"z": 1.10, "a": [1e400, 123456789012345678901234567890, "\\u00e9\\n"], '
    raw += b'"merchant\\u0053ecret": "s"}'
    result = redactor.redact(raw)

    kept = '{"z": 1.10, "a": [1e400, 123456789012345678901234567890, "\\u00e9\\n"], '
    kept += '"merchantSecret": '
    assert result.data.startswith(kept.encode())


def test_marker_lookalike_outside_the_secret_key_still_gets_cards_masked(
    redactor: Redactor,
) -> None:
    fake = "[REDACTED merchantSecret hmac-sha256:4111111111111111aaaaaaaaaaaaaaaa]"
    result = redactor.redact(json.dumps({"note": fake}).encode())

    assert b"4111111111111111" not in result.data


def test_both_rules_fire_together(redactor: Redactor) -> None:
    raw = b'{"merchantSecret": "s", "note": "4111111111111111"}'

    assert redactor.redact(raw).rules == ("merchant_secret", "pan")


def test_untouched_input_is_returned_as_is(redactor: Redactor) -> None:
    raw = b'{"type": "EXECUTE_TRANSACTION_UPDATE", "tag": "t-1", "createdTimestamp": 0}'
    result = redactor.redact(raw)

    assert result.data is raw
    assert result.rules == ()


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="key"):
        Redactor(b"")


# -- properties ---------------------------------------------------------------------------

NO_DIGITS = st.text(st.characters(exclude_categories=["Nd", "Cs"]), max_size=20)
SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | NO_DIGITS
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(NO_DIGITS.filter(lambda key: key != "merchantSecret"), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str]:
    """A Luhn-valid card number: (digits, as written with random separators)."""
    body = "".join(str(d) for d in draw(st.lists(st.integers(0, 9), min_size=12, max_size=18)))
    digits = luhn_complete(body)
    separators = draw(
        st.lists(
            st.sampled_from(["", " ", "-"]), min_size=len(digits) - 1, max_size=len(digits) - 1
        )
    )
    written = digits[0] + "".join(s + d for s, d in zip(separators, digits[1:], strict=True))
    return digits, written


def plant(document: Any, text: str, where: int) -> dict[str, Any]:
    """Put `text` into a string somewhere inside a P3-like object."""
    if isinstance(document, dict) and document and where % 3 == 0:
        key = sorted(document)[where % len(document)]
        return {**document, key: plant(document[key], text, where // 3)}
    if isinstance(document, list) and document and where % 3 == 1:
        items: list[Any] = list(document)
        items[where % len(items)] = plant(items[where % len(items)], text, where // 3)
        return {"items": items}
    return {"type": "X", "note": text, "rest": document}


@given(
    document=DOCUMENTS,
    card=cards(),
    prefix=NO_DIGITS,
    suffix=NO_DIGITS,
    joiner=st.sampled_from(["", " "]),
    where=st.integers(0, 1000),
    escape=st.lists(st.booleans(), max_size=25),
    indent=st.sampled_from([None, 2]),
    ensure_ascii=st.booleans(),
)
def test_planted_card_never_survives(
    document: Any,
    card: tuple[str, str],
    prefix: str,
    suffix: str,
    joiner: str,
    where: int,
    escape: list[bool],
    indent: int | None,
    ensure_ascii: bool,
) -> None:
    digits, written = card
    # With no joiner, "é4111..." under ensure_ascii is "\\u00e94111...".
    message = plant(document, f"{prefix}{joiner}{written}{joiner}{suffix}", where)
    text = json.dumps(message, indent=indent, ensure_ascii=ensure_ascii)
    # Spell some of the card's characters as \u escapes, which text matching cannot see.
    flags = escape or [False]
    spelled = "".join(
        f"\\u{ord(char):04x}" if flags[i % len(flags)] else char for i, char in enumerate(written)
    )
    raw = text.replace(written, spelled).encode()

    result = Redactor(KEY).redact(raw)

    decoded = json.dumps(json.loads(result.data), ensure_ascii=False)
    assert digits not in re.sub(r"[ -]", "", decoded)
    assert "pan" in result.rules


SOUP_PIECES = [b'"merchantSecret"', b":", b'"', b"\\", b"\\u0034", b"\\u0053", b"\\u00e9", b"null"]
SOUP_PIECES += [b"4111111111111111", b"4111 1111", b"1", b" ", b"-", b"a", b"\xff"]
SOUP_PIECES += [b"{", b"}", b"[", b"]", b","]
BYTE_SOUP = st.lists(st.sampled_from(SOUP_PIECES)).map(b"".join)


@given(st.binary() | BYTE_SOUP)
def test_arbitrary_bytes_never_raise_and_redact_idempotently(raw: bytes) -> None:
    redactor = Redactor(KEY)
    once = redactor.redact(raw)

    assert list(once.rules) == sorted(set(once.rules))
    assert redactor.redact(once.data).data == once.data
