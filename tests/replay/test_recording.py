"""Loading a recorded session from a store."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from p3log.replay.recording import ReplayError, load_session
from p3log.store.errors import StoreError
from tests.replay.conftest import FixtureStores
from tests.replay.sessions import fixture_session


def test_a_fixture_session_loads_as_plain_data(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    session_id = fixture_stores.copy("signature", tmp_path / "store")
    session = load_session(tmp_path / "store", session_id)
    _, records = fixture_session("signature")
    wire = [r for r in records if r["sender"] != "tap"]
    assert [m.seq for m in session.messages] == [r["seq"] for r in wire]
    assert [m.msg_type for m in session.messages] == [r["msg_type"] for r in wire]
    assert [m.at_ns for m in session.messages] == [r["mono_ns"] for r in wire]
    assert [m.raw.decode() for m in session.messages] == [r["payload"] for r in wire]
    assert len(session.pos_messages) == 5 and len(session.server_messages) == 19
    first = session.messages[1].payload
    assert first is not None and first["loginMerchantResponse"]["devices"][0]["type"] == "MOCK"
    execute = session.pos_messages[1].payload
    assert execute is not None
    assert execute["executeTransactionRequest"]["transactionParameters"]["amount"] == Decimal(
        "90.02"
    )
    assert session.transport == "ws"
    assert session.opened_ns == records[0]["mono_ns"]
    assert session.close is not None and session.close.by == "client"


def test_a_unique_prefix_names_a_session(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    session_id = fixture_stores.copy("demo", tmp_path / "store")  # three sessions
    assert load_session(tmp_path / "store", session_id[:6]).session_id == session_id


def test_no_such_session_says_which_there_are(
    tmp_path: Path, fixture_stores: FixtureStores
) -> None:
    session_id = fixture_stores.copy("simple", tmp_path / "store")
    with pytest.raises(ReplayError, match=rf"no session 'nope' \(it has: {session_id}\)"):
        load_session(tmp_path / "store", "nope")


def test_an_ambiguous_prefix_is_refused(tmp_path: Path, fixture_stores: FixtureStores) -> None:
    fixture_stores.copy("demo", tmp_path / "store")  # three sessions
    with pytest.raises(ReplayError, match="'' is ambiguous"):
        load_session(tmp_path / "store", "")


def test_a_missing_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        load_session(tmp_path / "nothing", "x")
