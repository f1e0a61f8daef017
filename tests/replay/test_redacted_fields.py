"""Redacted fields match: a live message is compared as the store records it.

A recording holds card numbers masked and merchant secrets as keyed fingerprints; a
live POS (serve) or server (drive) sends them in clear. The replay passes every live
message through the store's own redaction (its writer's `Door`: the same code, policy
and key) before matching and diffing, so a field matches exactly when its original
would have been redacted to the same text. What the store cannot reproduce (another
store's key) is refused in one line, and nothing is ever compared or written in clear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import HealthCheck, given, settings

from p3log.net.channel import ChannelClosed, open_channel
from p3log.protocol import jsontext
from p3log.replay.drive_plan import DrivePlan, Received
from p3log.replay.normalise import VolatilePaths
from p3log.replay.plan import Matched, Pacing, Send, ServePlan
from p3log.replay.recording import RecordedSession, ReplayError, session_from_rows
from p3log.replay.serve import ServeConfig, serve_replay
from p3log.store.capture import Door
from p3log.store.event import Stamp, seal
from p3log.store.log import EventLog
from p3log.store.read import open_store
from p3log.store.redact import Redactor
from p3log.store.transfer import export_store, import_jsonl
from tests.replay.conftest import FixtureStores
from tests.replay.sessions import USB, login, login_ok, msg

#: Serve compares the merchant secret itself too (it is volatile by default).
SECRET_COMPARED = VolatilePaths.default().without(["**.merchantSecret"])
ASAP = Pacing("asap")


def luhn_complete(body: str) -> str:
    """`body` with the check digit that makes it pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:
            digit = digit * 2 - 9 if digit * 2 > 9 else digit * 2
        total += digit
    return body + str((10 - total % 10) % 10)


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-passing run of 13 to 19 digits, maybe in groups of 4 (spaces or dashes)."""
    length = draw(st.integers(13, 19))
    digits = luhn_complete(draw(st.text("0123456789", min_size=length - 1, max_size=length - 1)))
    separator = draw(st.sampled_from(["", " ", "-"]))
    return separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))


# Secrets as merchants have them. Not JSON punctuation: a one-character secret `:`
# is also found between a key and its value (`"type":"…"` holds `":"`), so its
# reuse marker breaks the message itself (a redaction finding, reported separately).
secrets = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters='":,\\'),
    min_size=1,
    max_size=24,
)


def stored(door: Door, session_id: str, sender: str, data: bytes) -> bytes:
    """`data` as the store records it for `session_id` (what the writer's door makes)."""
    body = door.wire_body(session_id, sender, data, Stamp.now())  # type: ignore[arg-type]
    found = seal(body, 1, "0" * 64).wire_bytes
    assert found is not None
    return found


def recorded(door: Door, messages: list[tuple[str, dict[str, Any]]]) -> RecordedSession:
    """The session `messages` make when the store records them (as the tap would)."""
    rows = []
    for seq, (sender, obj) in enumerate(messages, start=1):
        body = door.wire_body("rec", sender, jsontext.dumps(obj).encode(), Stamp.now())  # type: ignore[arg-type]
        rows.append(
            (
                seq,
                sender,
                body.kind,
                body.msg_type,
                body.tag,
                body.resource,
                seq,
                body.payload,
                body.raw,
            )
        )
    return session_from_rows("rec", rows)


def sale(tag: str, card: str, secret: str, reference: int) -> dict[str, Any]:
    """An execute whose metadata holds a card number, a reused secret and a number
    that passes the Luhn check."""
    params = {"amount": 10, "currency": "EUR", "type": "CHARGE", "reference": reference}
    metadata = {"note": f"card {card} (operator {secret})", "operator": secret}
    body = {"transactionParameters": params, "metadata": metadata}
    return msg("EXECUTE_TRANSACTION_REQUEST", tag, body, resource=USB)


def sale_response(tag: str, card: str, secret: str) -> dict[str, Any]:
    details = {"pan": card, "holder": "A N Other", "operator": secret}
    body = {"transaction": {"identifier": "t-1", "status": "APPROVED", "cardDetails": details}}
    return msg("EXECUTE_TRANSACTION_RESPONSE", tag, body, resource=USB, status="OK")


def conversation(tags: tuple[str, str], card: str, secret: str, reference: int) -> list[Any]:
    first, second = tags
    return [
        ("client", login(first, secret)),
        ("server", login_ok(first)),
        ("client", sale(second, card, secret, reference)),
        ("server", sale_response(second, card, secret)),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(card=card_numbers(), secret=secrets, reference=card_numbers())
def test_serve_matches_card_numbers_and_secrets_with_their_recording(
    card: str, secret: str, reference: str
) -> None:
    door = Door(Redactor(b"k" * 32))
    number = int(reference.replace(" ", "").replace("-", ""))
    session = recorded(door, conversation(("r-1", "r-2"), card, secret, number))
    plan = ServePlan(session, pacing=ASAP, volatile=SECRET_COMPARED)
    plan.start(0.0)
    for sender, obj in conversation(("live-1", "live-2"), card, secret, number):
        if sender == "server":
            assert [type(step) for step in plan.take_due(0.0)] == [Send]
            continue
        data = jsontext.dumps(obj).encode()
        result = plan.receive(data, 0.0, stored(door, "live", "client", data))
        assert isinstance(result, Matched), result.summary()  # type: ignore[union-attr]
    assert plan.complete and not plan.divergences


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(card=card_numbers(), secret=secrets)
def test_drive_matches_a_server_that_sends_card_numbers_and_secrets(card: str, secret: str) -> None:
    door = Door(Redactor(b"k" * 32))
    session = recorded(door, conversation(("r-1", "r-2"), card, secret, 7))
    live_tags = iter(["d-1", "d-2"])
    plan = DrivePlan(session, pacing=ASAP, secret=secret, new_tag=live_tags.__next__)
    plan.start(0.0)
    for sender, obj in conversation(("d-1", "d-2"), card, secret, 7):
        data = jsontext.dumps(obj).encode()
        if sender == "client":
            (step,) = plan.take_due(0.0)
            assert isinstance(step, Send)
            stored(door, "live", "client", step.data)  # the run records what it sends
            continue
        result = plan.receive(data, 0.0, stored(door, "live", "server", data))
        assert isinstance(result, Received), result.summary()  # type: ignore[union-attr]
    assert not plan.divergences


def test_the_live_original_teaches_the_tag_the_pos_gets_back() -> None:
    """A card-shaped tag is masked in what is compared, never in what goes back."""
    door = Door(Redactor(b"k" * 32))
    tag = "4111 1111 1111 1111"
    session = recorded(door, conversation(("r-1", "r-2"), "4111111111111111", "pw-123456", 7))
    plan = ServePlan(session, pacing=ASAP, volatile=SECRET_COMPARED)
    plan.start(0.0)
    data = jsontext.dumps(login(tag, "pw-123456")).encode()
    assert isinstance(plan.receive(data, 0.0, stored(door, "live", "client", data)), Matched)
    (reply,) = plan.take_due(0.0)
    assert isinstance(reply, Send) and json.loads(reply.data)["tag"] == tag


def record_session(root: Path, messages: list[tuple[str, dict[str, Any]]]) -> None:
    with EventLog.open(root) as log:
        for sender, obj in messages:
            log.record_message("incident", sender, jsontext.dumps(obj).encode())  # type: ignore[arg-type]


async def play_pos(config: ServeConfig, messages: list[tuple[str, dict[str, Any]]]) -> Any:
    """Serve `config` and play the POS side of `messages` over a real WebSocket."""
    results = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[int]) -> None:
                results.append(await serve_replay(config, task_status=task_status))

            port = await nursery.start(serve)
            async with open_channel(f"ws://127.0.0.1:{port}/") as channel:
                for sender, obj in messages:
                    if sender == "client":
                        await channel.send(jsontext.dumps(obj).encode())
                    else:
                        assert json.loads(await channel.receive())["type"] == obj["type"]
                await channel.aclose()
    return results[0]


CARD, SECRET, REFERENCE = "4111 1111 1111 1111", "merchant-pw-42", 4222222222222


async def test_a_pos_sending_card_numbers_and_secrets_matches_its_recording(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    record_session(store, conversation(("r-1", "r-2"), CARD, SECRET, REFERENCE))
    config = ServeConfig(store, "incident", pacing=ASAP, volatile=SECRET_COMPARED)
    live = conversation(("live-1", "live-2"), CARD, SECRET, REFERENCE)
    result = await play_pos(config, live)
    assert result.outcome == "complete" and result.divergences == (), result.divergences
    assert (result.pos_matched, result.server_sent) == (2, 2)
    con = open_store(store)
    try:
        texts = con.execute(
            "SELECT coalesce(payload, '') || coalesce(decode(raw), '') FROM events "
            "WHERE session_id = ?",
            [result.session_id],
        ).fetchall()
    finally:
        con.close()
    everything = "".join(text for (text,) in texts)
    assert "[REDACTED merchantSecret" in everything and "4111 11** **** 1111" in everything
    for clear in (SECRET, "4111111111111111", CARD, str(REFERENCE)):
        assert clear not in everything


async def test_another_secret_diverges_and_is_never_shown(tmp_path: Path) -> None:
    store = tmp_path / "store"
    record_session(store, conversation(("r-1", "r-2"), CARD, SECRET, REFERENCE))
    config = ServeConfig(store, "incident", pacing=ASAP, volatile=SECRET_COMPARED)
    live = conversation(("live-1", "live-2"), CARD, "not-the-secret", REFERENCE)[:1]
    with pytest.raises(BaseExceptionGroup) as caught:
        await play_pos(config, [*live, ("server", login_ok("live-1"))])
    closed = caught.value.split(ChannelClosed)[0]
    assert closed is not None
    (leaf,) = closed.exceptions
    while isinstance(leaf, BaseExceptionGroup):
        (leaf,) = leaf.exceptions
    assert isinstance(leaf, ChannelClosed)
    assert "not-the-secret" not in leaf.reason  # nor in the close reason the POS got
    con = open_store(store)
    try:
        (summary,) = con.execute(
            "SELECT payload->>'summary' FROM events WHERE kind = 'replay_divergence'"
        ).fetchone()  # type: ignore[misc]
        everything = "".join(
            str(row) for row in con.execute("SELECT payload, raw FROM events").fetchall()
        )
    finally:
        con.close()
    assert "differs at loginMerchantRequest.merchantSecret" in summary
    assert "not-the-secret" not in summary and "not-the-secret" not in everything


async def test_fingerprints_of_another_store_are_refused_in_one_line(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    # The fixtures were recorded into a store whose key is gone: their login's
    # fingerprint cannot be reproduced, so it cannot be compared.
    session_id = fixture_stores.copy("decline", tmp_path / "store")
    config = ServeConfig(tmp_path / "store", session_id, volatile=SECRET_COMPARED)
    with trio.fail_after(10), pytest.raises(ReplayError, match="this store's key did not make"):
        await serve_replay(config)
    # Left uncompared (the default), the same session serves (test_serve.py).


async def test_an_imported_session_with_a_reused_secret_is_refused(tmp_path: Path) -> None:
    record_session(tmp_path / "a", conversation(("r-1", "r-2"), CARD, SECRET, REFERENCE))
    export_store(tmp_path / "a", "jsonl", tmp_path / "a.jsonl")
    import_jsonl(tmp_path / "b", tmp_path / "a.jsonl")
    # The secret in the execute's metadata is compared by default: refused.
    with trio.fail_after(10), pytest.raises(ReplayError, match="EXECUTE_TRANSACTION_REQUEST"):
        await serve_replay(ServeConfig(tmp_path / "b", "incident"))
