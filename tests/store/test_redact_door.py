"""The redaction door (`capture.Door`): each way past it that issue 11 found, closed.

Every event field is searched (`texts_of`: payload, raw, envelope strings, parse note,
also with JSON escapes decoded one and two levels down)."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pytest

from p3log.report.model import REDACTION_RULES
from p3log.store import redact
from p3log.store.capture import SESSION_END_KINDS, Door, SessionSecrets
from p3log.store.event import EventBody, Stamp
from p3log.store.redact import REDACTION_POLICY, Redactor
from tests.store.redact_hostile import assert_hidden, texts_of

SECRET = "s3cr3t-Value~7"
PAN = "4111111111111111"
STAMP = Stamp(1_700_000_000_000_000, 0)
ESCAPED_KEY = "merchant\\u0053ecret"
ESCAPED_PAN = "\\u0034111111111111111"


@pytest.fixture
def door() -> Door:
    return Door(Redactor(b"k" * 32))


def message(door: Door, data: bytes, session: str = "s1") -> EventBody:
    return door.wire_body(session, "client", data, STAMP)


def hidden(body: EventBody) -> None:
    assert_hidden(texts_of(body), SECRET, PAN)


# -- what a JSON reader sees, whatever the bytes --------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        # lenient (trailing comma, comment) with \u escapes: re-serialised from its parse
        f'{{"type": "X", "{ESCAPED_KEY}": "{SECRET}", "n": "{ESCAPED_PAN}",}}',
        f'{{"type": "X", /* c */ "{ESCAPED_KEY}": "{SECRET}", "n": "{ESCAPED_PAN}"}}',
        f'{{"type": "X", "{ESCAPED_KEY}" /* c */ : "{SECRET}", "n": "{ESCAPED_PAN}"}}',
        # escapes when the document is not an object
        f'[{{"{ESCAPED_KEY}": "{SECRET}"}}, "{ESCAPED_PAN}"]',
        f'"{ESCAPED_PAN}"',
        # nested deeper than Python's recursion limit
        "[" * 5000 + f'{{"{ESCAPED_KEY}": "{SECRET}", "n": "{ESCAPED_PAN}"}}' + "]" * 5000,
        # a quote in a comment must not turn strings inside out; a card in a comment
        '{"type": "X", /* it\'s "odd */ "note": "{\\"merchantSecret\\": \\"'
        + SECRET
        + f'\\"}}", /* {ESCAPED_PAN} */ "u": "http://x"}}',
    ],
    ids=[
        "trailing-comma",
        "comment",
        "comment-before-colon",
        "array",
        "string",
        "deep",
        "quote-in-comment",
    ],
)
def test_escaped_keys_and_digits_are_redacted_in_any_document(door: Door, data: str) -> None:
    body = message(door, data.encode())

    hidden(body)
    assert body.redaction_policy == REDACTION_POLICY
    assert "escapes_decoded" in body.redactions


def test_the_lenient_payload_is_redacted_where_the_raw_bytes_were_not(door: Door) -> None:
    body = message(door, f'{{"type": "X", "{ESCAPED_KEY}": "{SECRET}",}}'.encode())

    assert body.payload is not None and body.raw is not None
    assert json.loads(body.payload)["merchantSecret"].startswith("[REDACTED merchantSecret")
    assert "merchant_secret" in body.redactions


def test_lenient_json_too_large_to_forgive_is_kept_as_redacted_bytes(door: Door) -> None:
    padding = ", ".join(f'"k{n}": "{"x" * 60}"' for n in range(1200))
    data = f'{{"type": "X", {padding}, "{ESCAPED_KEY}": "{SECRET}", "n": "{ESCAPED_PAN}",}}'
    body = message(door, data.encode())

    hidden(body)
    assert body.kind == "malformed" and body.payload is None and body.raw is not None
    assert body.redactions == ("escapes_decoded", "merchant_secret", "pan")


def test_bytes_that_are_not_utf8_are_redacted_too(door: Door) -> None:
    data = b'\xff{"' + ESCAPED_KEY.encode() + b'": "' + SECRET.encode() + b'\xfe", "n": '
    data += ESCAPED_PAN.encode() + b"}"
    body = message(door, data)

    hidden(body)
    assert body.kind == "malformed"


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
)
def test_json_in_utf16_or_utf32_is_redacted_in_its_encoding(door: Door, encoding: str) -> None:
    # RFC 7159 JSON may be UTF-16 or UTF-32, and `json.loads` of bytes reads it so.
    document = {"type": "X", "merchantSecret": SECRET, "n": PAN, "note": f"card {PAN}"}
    data = json.dumps(document).encode(encoding) + b"\0"  # a partial code unit after it
    body = message(door, data)

    assert body.raw is not None
    read = json.loads(body.raw[: len(body.raw) - 1])
    assert_hidden(iter([json.dumps(read, ensure_ascii=False)]), SECRET, PAN)
    assert read["merchantSecret"].startswith("[REDACTED merchantSecret hmac-sha256:")
    assert body.redactions == ("merchant_secret", "pan")


@pytest.mark.parametrize(
    "number",
    [
        PAN,
        f"{PAN}.0",
        f"-{PAN}",
        "4.111111111111111e15",
        "41111111111111.11E2",
        # read as a float, each is 4111111111111111.0
        "4111111111111110.9999999",
        "4.1111111111111109999e15",
    ],
)
def test_a_card_number_sent_as_a_json_number_is_masked(door: Door, number: str) -> None:
    data = f'{{"type": "X", "amount": {number}, "n": [{number}]}}'.encode()
    assert abs(json.loads(data)["amount"]) == int(PAN)  # what a reader sees
    body = message(door, data)

    hidden(body)
    assert body.payload is not None
    assert json.loads(body.payload)["amount"] == "411111******1111"  # a string now
    assert body.redactions == ("pan",)


# -- the credential in other spellings, and where it hides ----------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "MerchantSecret",
        "merchant_secret",
        "merchant-secret",
        "MERCHANT_SECRET",
        "Merchant\\u005fSecret",
        "merchant\\u002Dsecret",
    ],
)
def test_every_spelling_of_the_merchant_secret_key_is_redacted(door: Door, key: str) -> None:
    body = message(door, f'{{"type": "X", "{key}": "{SECRET}"}}'.encode())

    hidden(body)
    assert "merchant_secret" in body.redactions


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_a_secret_in_a_string_that_holds_json_is_redacted(door: Door, ensure_ascii: bool) -> None:
    inner = json.dumps({"merchantSecret": SECRET, "card": PAN})
    twice = json.dumps({"blob": inner})  # JSON inside JSON inside a string
    data = json.dumps({"type": "X", "note": inner, "deeper": twice}, ensure_ascii=ensure_ascii)
    body = message(door, data.encode())

    hidden(body)
    assert body.payload is not None
    note = json.loads(json.loads(body.payload)["note"])
    assert note["merchantSecret"].startswith("[REDACTED merchantSecret hmac-sha256:")


# -- the session's secret, wherever else it appears -----------------------------------------


def login(secret: str, identifier: str) -> bytes:
    # A real public client: the same value as identifier and secret, the identifier first.
    body = {"merchantIdentifier": identifier, "merchantSecret": secret, "providerMode": "TEST"}
    return json.dumps({"type": "LOGIN_MERCHANT_REQUEST", "loginMerchantRequest": body}).encode()


def test_the_secret_used_as_identifier_in_the_same_login_is_replaced(door: Door) -> None:
    body = message(door, login(SECRET, SECRET))

    hidden(body)
    assert body.payload is not None
    fields = json.loads(body.payload)["loginMerchantRequest"]
    assert fields["merchantIdentifier"] == fields["merchantSecret"]  # the same marker
    assert body.redactions == ("merchant_secret", "secret_reuse")


@pytest.mark.parametrize("secret", ["demo-merchant-secret", "MerchantSecret-42"])
def test_a_secret_that_names_itself_is_one_marker_and_one_rule(door: Door, secret: str) -> None:
    """A secret holding the word "secret" (the demo's does) is a string another reader
    would look into: it still becomes the plain marker, and only rules that changed
    something are listed (a login alone is `merchant_secret`, not `secret_reuse`)."""
    alone = message(door, login(secret, "m-1"), session="a")
    assert alone.redactions == ("merchant_secret",)
    twice = message(door, login(secret, secret), session="b")
    assert twice.payload is not None
    fields = json.loads(twice.payload)["loginMerchantRequest"]
    assert fields["merchantIdentifier"] == fields["merchantSecret"]
    assert fields["merchantSecret"].startswith("[REDACTED merchantSecret hmac-sha256:")
    assert twice.redactions == ("merchant_secret", "secret_reuse")


def test_the_secret_is_replaced_anywhere_later_in_its_session_only(door: Door) -> None:
    message(door, login(SECRET, "m-1"))
    later = f'{{"type": "X", "tag": "{SECRET}", "note": "id {SECRET} again"}}'.encode()
    spelled = SECRET.replace("V", "\\u0056")
    escaped = f'{{"type": "X", "tag": "{spelled}"}}'.encode()

    for body in (message(door, later), message(door, escaped)):
        hidden(body)
        assert body.tag is not None and body.tag.startswith("[REDACTED merchantSecret")
        assert body.redactions[-1] == "secret_reuse"
    assert message(door, later, session="s2").redactions == ()


def test_a_short_secret_is_replaced_only_as_a_whole_value(door: Door) -> None:
    message(door, login("abc", "m-1"))
    body = message(door, b'{"type": "X", "tag": "abc", "note": "abcdef"}')

    assert body.payload is not None
    assert json.loads(body.payload)["note"] == "abcdef"
    assert body.tag is not None and body.tag.startswith("[REDACTED merchantSecret")


@pytest.mark.parametrize("end", sorted(SESSION_END_KINDS))
def test_a_session_memory_is_dropped_when_it_ends(door: Door, end: str) -> None:
    message(door, login(SECRET, "m-1"))
    assert door.secrets.known("s1") == (SECRET,)

    door.lifecycle_body("s1", end, {"by": "client"}, STAMP)

    assert door.secrets.known("s1") == ()
    assert len(door.secrets) == 0


def test_the_session_memory_is_bounded() -> None:
    memory = SessionSecrets()
    for n in range(SessionSecrets.SESSIONS + 10):
        memory.remember(f"s{n}", tuple(f"secret-{n}-{i}" for i in range(20)))

    assert len(memory) == SessionSecrets.SESSIONS
    assert memory.known("s0") == ()  # the least recently active went first
    assert len(memory.known(f"s{SessionSecrets.SESSIONS}")) == SessionSecrets.PER_SESSION


# -- the handshake -------------------------------------------------------------------------


def test_handshake_credentials_are_redacted_in_path_url_headers_and_subprotocols(
    door: Door,
) -> None:
    path = f"/p3?merchant_Secret={SECRET.replace('~', '%7E')}&card={PAN}&access_token=tok-9"
    headers = [
        ["Host", "127.0.0.1"],
        ["X-Merchant-Secret", SECRET],
        ["Authorization", "Bearer tok-9"],
        ["Cookie", "sid=tok-9"],
        ["X-Auth-Token", "tok-9"],
        ["Sec-WebSocket-Protocol", "p3, tok-9"],
        ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
    ]
    opened = {"path": path, "subprotocols": ["p3", "tok-9"], "headers": headers}
    url = f"ws://user:tok-9@upstream:9{path}"
    bodies = [
        door.lifecycle_body("s1", "connection_opened", opened, STAMP),
        door.lifecycle_body("s1", "upstream_connected", {"url": url, "subprotocol": "tok"}, STAMP),
        message(door, f'{{"type": "X", "tag": "{SECRET}"}}'.encode()),  # reused later
    ]

    for body in bodies:
        hidden(body)
        for text in texts_of(body):
            assert "tok-9" not in text
    assert bodies[0].redactions == ("handshake_credential", "merchant_secret", "pan")
    assert bodies[0].payload is not None
    recorded = dict(json.loads(bodies[0].payload)["headers"])
    assert recorded["Host"] == "127.0.0.1"
    assert recorded["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ=="  # a nonce, kept
    assert recorded["X-Merchant-Secret"].startswith("[REDACTED merchantSecret hmac-sha256:")
    assert recorded["Authorization"].startswith("[REDACTED credential hmac-sha256:")
    assert bodies[2].redactions == ("secret_reuse",)
    # Recorded again (an import), the event is as it was.
    again = door.lifecycle_body("s2", "connection_opened", bodies[0].payload.encode(), STAMP)
    assert (again.payload, again.redactions) == (bodies[0].payload, ())


def test_a_secret_reused_with_an_escaped_solidus_is_replaced(door: Door) -> None:
    # JSON readers read `\/` as `/`: "ab\/cd" is the secret "ab/cd".
    secret = "hunter2/xyzzy"
    login = message(
        door, b'{"type": "L", "merchantSecret": "hunter2/xyzzy", "id": "hunter2\\/xyzzy"}'
    )
    later = message(door, b'{"type": "M", "tag": "hunter2\\/xyzzy"}')

    for body in (login, later):
        assert_hidden(texts_of(body), secret, None)
    assert "secret_reuse" in later.redactions


@pytest.mark.parametrize("char", ["\t", "\n", '"', "\\"])
def test_a_secret_with_a_control_character_reused_as_raw_bytes_is_replaced(
    door: Door, char: str
) -> None:
    # Bytes that are not JSON hold the character as itself, not as its escape.
    secret = f"abc{char}defgh"
    message(door, json.dumps({"type": "L", "merchantSecret": secret}).encode())
    body = message(door, b'{"type": "M", "tag": "' + secret.encode() + b'"}')

    assert_hidden(texts_of(body), secret, None)
    assert "secret_reuse" in body.redactions


@pytest.mark.parametrize(
    "data",
    [
        # a backslash ends a line comment: the lenient reader reads the next line
        b'{"type": "X", // c \\\n"merchantSecret": "SECRET", "n": "PAN"}',
        # `\*/` ends a block comment for the lenient reader
        b'{"type": "X", /* a \\*/ "merchantSecret": "SECRET", "n": "PAN" /* */}',
        # a backslash that starts no escape, before a card number, in bytes that are not JSON
        b'C:\\PAN and {"n": "\\PAN"}',
    ],
    ids=["line-comment-backslash", "block-comment-backslash-star", "backslash-digit"],
)
def test_a_backslash_that_starts_no_escape_hides_nothing(door: Door, data: bytes) -> None:
    body = message(door, data.replace(b"SECRET", SECRET.encode()).replace(b"PAN", PAN.encode()))

    hidden(body)


@pytest.mark.parametrize(
    "text",
    ["\\u4111111111111111", "x \\u4111 1111 1111 1111", "\\u0041\\u5500000000000004"],
    ids=["hex-then-digits", "hex-then-groups", "after-a-decoded-escape"],
)
def test_digits_that_run_on_from_an_escape_are_masked(door: Door, text: str) -> None:
    # A reader sees no card number, but the bytes hold its digits in sequence.
    body = message(door, f'{{"type": "X", "n": "{text}"}}'.encode())

    assert body.payload is not None
    assert body.redactions[-1] == "pan"
    assert json.loads(body.payload)["n"]  # still JSON
    for pan in (PAN, "5500000000000004"):
        assert pan not in body.payload.replace(" ", "")


@pytest.mark.parametrize(
    "data",
    [
        b'log: {\\"merchantSecret\\": \\"SECRET\\"}',  # escaped JSON, not in a string
        b'{"type": "X", \\"merchant_secret": "SECRET"}',
    ],
    ids=["escaped-json", "escaped-opening-quote"],
)
def test_a_secret_key_with_escaped_quotes_outside_a_string_is_masked(
    door: Door, data: bytes
) -> None:
    hidden(message(door, data.replace(b"SECRET", SECRET.encode())))


def test_a_secret_in_a_marker_look_alike_replaces_the_look_alike(door: Door) -> None:
    # A hex secret is a marker's hex digits, as far as a look-alike goes.
    secret = "deadbeef4242"
    look_alike = f"[REDACTED merchantSecret hmac-sha256:{secret}{'0' * 20}]"
    message(door, json.dumps({"type": "L", "merchantSecret": secret}).encode())
    body = message(door, json.dumps({"type": "X", "tag": look_alike, "a": "REDACTED"}).encode())

    assert_hidden(texts_of(body), secret, None)
    assert body.redactions == ("secret_reuse",)


@pytest.mark.parametrize(
    "comment",
    ['/* "merchantSecret": "SECRET" */', '// "Merchant_Secret": "SECRET"\n'],
    ids=["block", "line"],
)
def test_a_secret_key_in_a_comment_is_redacted_in_the_raw_bytes(door: Door, comment: str) -> None:
    data = '{"type": "X", ' + comment.replace("SECRET", SECRET) + ' "n": 1}'
    body = message(door, data.encode())

    hidden(body)
    assert body.kind == "message" and body.redactions == ("merchant_secret",)


@pytest.mark.parametrize(
    "path",
    [
        f"/p3#merchantSecret={SECRET}",  # a fragment in the request target
        f"/p3?x=1#a=2&merchant_secret={SECRET}",
        # a marker look-alike in front of the value is no marker
        f"/p3?merchantSecret=[REDACTED x hmac-sha256:{'0' * 32}]{SECRET}",
    ],
    ids=["fragment", "fragment-parameters", "marker-prefix"],
)
def test_a_secret_in_a_fragment_or_behind_a_marker_look_alike_is_redacted(
    door: Door, path: str
) -> None:
    headers = [["Referer", f"http://pos{path}"]]
    opened = {"path": path, "headers": headers}
    bodies = [
        door.lifecycle_body("s1", "connection_opened", opened, STAMP),
        door.lifecycle_body("s1", "upstream_connected", {"url": f"ws://up{path}"}, STAMP),
    ]

    for body in bodies:
        hidden(body)
        assert "merchant_secret" in body.redactions


def test_a_secret_reused_percent_encoded_in_the_handshake_is_replaced(door: Door) -> None:
    # A public client sends one value as identifier and secret, here percent-encoded
    # differently each time; a URL reader sees the secret in both.
    path = "/p3?merchantId=s3cr%65t-v%61lue&merchantSecret=s3cret-valu%65&note=x+s3cret-value"
    bodies = [
        door.lifecycle_body("s1", "connection_opened", {"path": path}, STAMP),
        door.lifecycle_body(
            "s1", "upstream_connected", {"url": "ws://up/?id=s3cret%2Dvalue"}, STAMP
        ),
    ]

    for body in bodies:
        assert body.payload is not None
        recorded = json.loads(body.payload)
        query = unquote_plus(recorded.get("path") or recorded["url"])
        assert "s3cret-value" not in query
        assert "secret_reuse" in body.redactions


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Merchant-Secret": [SECRET]},  # one header, several values (an imported event)
        [["X-Merchant-Secret", SECRET, SECRET]],
    ],
    ids=["dict-of-lists", "name-and-values"],
)
def test_a_credential_header_with_several_values_is_redacted(door: Door, headers: object) -> None:
    details = json.dumps({"path": "/", "headers": headers}).encode()

    hidden(door.lifecycle_body("s1", "connection_opened", details, STAMP))


# -- fail closed, and what is kept ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "X", "merchantSecret": ' + b"[" * 100_000,  # a value that never ends
        b'{"type": "X", ' + b'"a": "\\u0041", ' * 5000 + b'"n": "' + PAN.encode() + b'"}',
        b"[" + b'"1700000000000", ' * 3000 + b'"' + PAN.encode() + b'"]',
    ],
    ids=["unbalanced-secret", "many-escapes", "many-candidates"],
)
def test_a_message_beyond_the_work_budget_is_replaced_whole(door: Door, data: bytes) -> None:
    body = message(door, data)

    hidden(body)
    assert body.redactions == ("unchecked",)
    assert body.payload is not None and body.payload.startswith('"[REDACTED unchecked:')


def test_imported_details_too_deep_to_walk_are_replaced_whole(door: Door) -> None:
    depth = 900  # json reads it; walking it on top of the caller's stack may not
    details = '{"headers": ' + "[" * depth + '["Cookie", "' + SECRET + '"]' + "]" * depth + "}"
    body = door.lifecycle_body("s1", "connection_opened", details.encode(), STAMP)

    hidden(body)


def test_a_secret_after_an_unterminated_comment_is_masked_to_the_end(door: Door) -> None:
    body = message(door, f'{{"type": "X", "merchantSecret" /* : "{SECRET}"}}'.encode())

    hidden(body)
    assert body.redactions == ("merchant_secret",)


def test_a_timestamp_field_keeps_a_plausible_epoch_ms_and_free_text_does_not(
    door: Door,
) -> None:
    luhn_valid_ms = "1700000000004"  # 2023-11-14, and it passes the Luhn check
    data = {
        "type": "X",
        "createdTimestamp": int(luhn_valid_ms),
        "details": {"createdTimestamp": luhn_valid_ms},
        "note": f"created {luhn_valid_ms}",
        "other": {"createdTimestamp": int("4222222222222")},  # a 13-digit Visa card
    }
    body = message(door, json.dumps(data).encode())

    assert body.payload is not None
    got = json.loads(body.payload)
    assert got["createdTimestamp"] == int(luhn_valid_ms)
    assert got["details"]["createdTimestamp"] == luhn_valid_ms
    assert got["note"] == "created 170000***0004"
    assert got["other"]["createdTimestamp"] == "422222***2222"


def test_every_rule_the_door_fires_is_listed_in_the_report() -> None:
    rules = {
        value
        for name, value in vars(redact).items()
        if name.endswith("_RULE") and isinstance(value, str)
    }

    assert rules == {name for name, _, _ in REDACTION_RULES}
    assert REDACTION_POLICY == "p3log-redact/2"


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "L", /* "merchantSecret": "SECRET" */ "a": 1}',
        b'{"type": "L", // "merchantSecret": "SECRET"\n "a": 1}',
        b'log: {\\"merchantSecret\\": \\"SECRET\\"}',
        b'{"n": "\\u4111111111111111"}',
        json.dumps({"merchantSecret": SECRET, "n": PAN}).encode("utf-16"),
        b'{"a": "[REDACTED merchantSecret hmac-sha256:deadbeef424200000000000000000000]"}',
    ],
    ids=["block-comment", "line-comment", "escaped-key", "escape-digits", "utf16", "look-alike"],
)
def test_redacting_again_changes_nothing(data: bytes) -> None:
    # An import redacts recorded events again; they must come out as they were.
    redactor = Redactor(b"k" * 32)
    once = redactor.redact(data.replace(b"SECRET", SECRET.encode()), ["deadbeef4242"])
    again = redactor.redact(once.data, ["deadbeef4242"])

    assert once.rules and (again.data, again.rules) == (once.data, ())
