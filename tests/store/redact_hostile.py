"""Hostile messages for the redaction tests: a merchant secret or a card number (PAN)
placed anywhere, in any spelling, and the check that none of it survives."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from p3log.store.event import EventBody

# Every generated secret holds one of these, and nothing else generated does, so a secret
# can never turn up in the output by coincidence (in a marker, a key, JSON syntax).
DISTINCT = "~!@#$%^&*é€😀"
SECRET_CHARS = DISTINCT + "abcXYZ019 -_.:/?=&;,'\"\\{}[]\t"
SECRETS = st.builds(
    lambda head, mark, tail: head + mark + tail,
    st.text(SECRET_CHARS, min_size=3, max_size=8),
    st.sampled_from(DISTINCT),
    st.text(SECRET_CHARS, min_size=2, max_size=8),
)
SECRET_KEYS = st.sampled_from(
    [
        "merchantSecret",
        "MerchantSecret",
        "merchant_secret",
        "merchant-secret",
        "MERCHANT_SECRET",
        "merchant.secret",
        "Merchant Secret",
    ]
)
NOISE = st.text(st.characters(codec="utf-8", categories=["Lu", "Ll", "Zs"]), max_size=8)


def luhn_complete(body: str) -> str:
    """`body` plus the check digit that makes it pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return body + str(-total % 10)


PANS = st.builds(
    lambda first, rest: luhn_complete(first + rest),
    st.sampled_from("3456"),  # not a plausible epoch-ms timestamp (those start with 1 or 2)
    st.text("0123456789", min_size=11, max_size=17),
)


def escaped(draw: st.DrawFn, text: str) -> str:
    """The JSON string literal of `text`, some characters spelled as \\u escapes
    (either case of hex digits)."""
    flags = draw(st.lists(st.booleans(), min_size=1, max_size=8))
    upper = draw(st.booleans())
    body = json.dumps(text, ensure_ascii=draw(st.booleans()))[1:-1]
    pieces = re.findall(r"\\u[0-9a-fA-F]{4}|\\.|.", body, re.DOTALL)
    out = []
    for index, piece in enumerate(pieces):
        if len(piece) == 1 and flags[index % len(flags)] and ord(piece) < 0x10000:
            code = f"{ord(piece):04x}"
            out.append("\\u" + (code.upper() if upper else code))
        else:
            out.append(piece)
    return '"' + "".join(out) + '"'


@st.composite
def pan_literals(draw: st.DrawFn, pan: str) -> str:
    """A JSON value that a reader sees as the card number."""
    form = draw(st.sampled_from(["string", "grouped", "int", "float", "exponent", "negative"]))
    if form == "string":
        return escaped(draw, draw(NOISE) + " " + pan + " " + draw(NOISE))
    if form == "grouped":
        separator = draw(st.sampled_from([" ", "-"]))
        groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
        return escaped(draw, separator.join(groups))
    if form == "int":
        return pan
    if form == "float":
        return pan + ".0"
    if form == "negative":
        return "-" + pan
    return f"{pan[0]}.{pan[1:]}e{len(pan) - 1}"


@st.composite
def hostile_documents(draw: st.DrawFn) -> tuple[list[bytes], str | None, str | None]:
    """Messages of one session (the secret's, then one that reuses it) and what they hide."""
    secret = draw(SECRETS) if draw(st.booleans()) else None
    pan = draw(PANS) if secret is None or draw(st.booleans()) else None
    members = [f"{escaped(draw, 'type')}: {json.dumps(draw(NOISE))}"]
    if secret is not None:
        key = escaped(draw, draw(SECRET_KEYS))
        value = escaped(draw, secret)
        comment = draw(st.sampled_from(["", "/* c */ ", '/* a " */ ', "// c\n"]))
        members.append(f"{key} {comment}: {value}")
        reuse = f'"merchantIdentifier": {escaped(draw, secret)}'
        members.insert(draw(st.integers(0, len(members))), reuse)
    if pan is not None:
        members.append(f'"pan": {draw(pan_literals(pan))}')
    body = "{" + ", ".join(members) + draw(st.sampled_from(["", ",", ' // "\n', " /* 1 */"])) + "}"
    shape = draw(st.sampled_from(["object", "array", "string", "nested", "deep", "raw"]))
    if shape == "array":
        body = f"[1, {body}, {json.dumps(draw(NOISE))}]"
    elif shape == "string":
        body = json.dumps(body, ensure_ascii=draw(st.booleans()))
    elif shape == "nested":
        body = '{"type": "X", "note": ' + json.dumps(body, ensure_ascii=draw(st.booleans())) + "}"
    elif shape == "deep":
        depth = draw(st.sampled_from([2, 50, 1200, 5000]))
        body = "[" * depth + body + "]" * depth
    elif shape == "raw":
        body = "garbage " + body + draw(st.sampled_from(["", " ]]", ' {"cut": "']))
    data = body.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data
    later = [f'{{"type": "Y", "tag": {escaped(draw, secret)}}}'.encode()] if secret else []
    return [data, *later], secret, pan


def unescaped(text: str) -> Iterator[str]:
    """`text`, then as JSON readers one and two levels down would see it."""
    yield text
    for _ in range(2):
        text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
        text = re.sub(r"\\(.)", r"\1", text)
        yield text


def texts_of(body: EventBody) -> Iterator[str]:
    """Every field of an event as text, in every reading of it."""
    fields: list[Any] = [body.payload, body.msg_type, body.tag, body.resource, body.status]
    fields += [body.parse_note, body.session_id, *body.redactions]
    if body.raw is not None:
        fields.append(body.raw.decode("utf-8", "replace"))
        fields.append(body.raw.decode("latin-1"))
    for field in fields:
        if field is not None:
            yield from unescaped(str(field))


def assert_hidden(texts: Iterator[str], secret: str | None, pan: str | None) -> None:
    for text in texts:
        if secret is not None:
            assert secret not in text
        if pan is not None:
            assert pan not in re.sub(r"[ \-.]|e\d+", "", text), text[:200]
