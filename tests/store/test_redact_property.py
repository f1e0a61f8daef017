"""Property: whatever a peer sends, no merchant secret and no card number leaves the door.

Messages are objects, arrays, strings, JSON inside strings, nested deeper than Python's
recursion limit, lenient (comments, trailing commas), cut short, not UTF-8; the secret
under any spelling of its key, reused as another value (before or after the key, and in a
later message), and everything spelled with \\u escapes; a card number in a string, grouped,
or as a JSON number (integer, float, exponent). Handshakes carry the secret in the query of
the path and the upstream URL, in headers and in subprotocols. They go through the real
door (`capture.Door`), and every field of every event is searched, also with its JSON
escapes decoded one and two levels down.
"""

from __future__ import annotations

import os
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p3log.store.capture import Door
from p3log.store.event import Stamp
from p3log.store.redact import Redactor
from tests.store.redact_hostile import (
    PANS,
    SECRETS,
    assert_hidden,
    hostile_documents,
    texts_of,
)

STAMP = Stamp(1_700_000_000_000_000, 0)
# A few seconds in `make test`; P3LOG_REDACT_EXAMPLES=5000 hunts longer.
EXAMPLES = int(os.environ.get("P3LOG_REDACT_EXAMPLES", "300"))
FEW = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FEW
@given(hostile_documents(), st.sampled_from(["client", "server"]))
def test_no_secret_or_card_number_survives_a_message(
    case: tuple[list[bytes], str | None, str | None], sender: str
) -> None:
    messages, secret, pan = case
    door = Door(Redactor(b"k" * 32))
    for data in messages:
        body = door.wire_body("s1", "client" if sender == "client" else "server", data, STAMP)
        assert_hidden(texts_of(body), secret, pan)


HEADER_NAMES = st.sampled_from(
    ["X-Merchant-Secret", "merchant_secret", "Authorization", "Cookie", "X-Auth-Token"]
)
PARAMETERS = st.sampled_from(["merchantSecret", "merchant_secret", "MERCHANT-SECRET", "token"])


@FEW
@given(
    secret=SECRETS,
    pan=PANS,
    where=st.sampled_from(["query", "header", "subprotocol"]),
    name=HEADER_NAMES,
    parameter=PARAMETERS,
    plus=st.booleans(),
)
def test_no_secret_or_card_number_survives_a_handshake(
    secret: str, pan: str, where: str, name: str, parameter: str, plus: bool
) -> None:
    door = Door(Redactor(b"k" * 32))
    encoded = quote_plus(secret) if plus else quote(secret, safe="")
    path = f"/p3?{parameter}={encoded}&card={pan}" if where == "query" else f"/p3?card={pan}"
    headers = [["Host", "127.0.0.1"], ["X-Card", pan]]
    if where == "header":
        headers.append([name, secret])
    protocols = [secret] if where == "subprotocol" else []
    opened = {"transport": "ws", "path": path, "subprotocols": protocols, "headers": headers}
    url = f"ws://127.0.0.1:9{path}"
    connected = {"url": url, "subprotocol": protocols[0] if protocols else None}
    failed = {"url": connected["url"], "error": f"upstream {connected['url']} unavailable"}
    for kind, details in (
        ("connection_opened", opened),
        ("upstream_connected", connected),
        ("upstream_failed", failed),
    ):
        body = door.lifecycle_body("s1", kind, details, STAMP)
        assert_hidden(texts_of(body), secret, pan)
