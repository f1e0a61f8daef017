"""Tags and fresh identifiers swapped between the recording and the live run (plain data)."""

from __future__ import annotations

import itertools

from p3log.protocol.dialect import dialect_from_dict
from p3log.replay.rewrite import Renames, fresh_identifier
from tests.replay.sessions import TX_ID, amend, response, update


def counting_ids() -> Renames:
    numbers = itertools.count(1)
    return Renames(fresh_ids=True, new_id=lambda old: f"{next(numbers):032x}")


def test_a_learned_tag_replaces_the_envelope_tag_only() -> None:
    renames = Renames()
    renames.learn_tag("E", "live-e")
    sent = renames.outgoing(update("E", "PROCESSING"))
    assert sent["tag"] == "live-e"
    assert renames.outgoing(update("other", "PROCESSING"))["tag"] == "other"


def test_untouched_messages_are_the_very_same_object() -> None:
    renames = Renames(fresh_ids=False)
    message = response("E")
    assert renames.outgoing(message) is message
    assert renames.incoming(message) is message


def test_fresh_ids_replace_an_identifier_everywhere_and_consistently() -> None:
    renames = counting_ids()
    first = renames.outgoing(update("E", "PROCESSING"))
    final = renames.outgoing(response("E"))
    fresh = f"{1:032x}"
    assert first["executeTransactionUpdate"]["transaction"]["identifier"] == fresh
    tx = final["executeTransactionResponse"]["transaction"]
    assert tx["identifier"] == fresh
    assert tx["merchantReceipt"]["lines"] == [f"Transaction {fresh}"]  # inside text, too
    assert renames.ids == {TX_ID: fresh}
    # A second transaction gets its own.
    other = "ab" * 16
    assert (
        renames.outgoing(update("F", "X", identifier=other))["executeTransactionUpdate"][
            "transaction"
        ]["identifier"]
        == f"{2:032x}"
    )


def test_the_pos_referring_to_a_fresh_id_is_read_in_the_recordings_terms() -> None:
    renames = counting_ids()
    renames.outgoing(response("E"))
    live = amend("live-a", f"{1:032x}")
    recorded_terms = renames.incoming(live)
    assert recorded_terms["amendTransactionRequest"]["transactionParameters"] == {
        "type": "REFUND",
        "referencedTransactionIdentifier": TX_ID,
    }
    assert (
        live["amendTransactionRequest"]["transactionParameters"]["referencedTransactionIdentifier"]
        == f"{1:032x}"
    )  # the live message itself is left alone


def test_an_abort_quoting_the_executes_tag_is_read_with_the_recorded_tag() -> None:
    dialect = dialect_from_dict({"abort": {"correlation": "body_tag"}})
    renames = Renames(dialect=dialect)
    renames.learn_tag("E", "live-e")
    live = {
        "type": "ABORT_TRANSACTION_REQUEST",
        "tag": "live-x",
        "abortTransactionRequest": {"transactionTag": "live-e"},
    }
    assert renames.incoming(live)["abortTransactionRequest"] == {"transactionTag": "E"}


def test_fresh_identifiers_keep_the_shape() -> None:
    fresh = fresh_identifier(TX_ID)
    assert len(fresh) == 32 and fresh != TX_ID and int(fresh, 16) >= 0
    upper = fresh_identifier("ABCDEF")
    assert len(upper) == 6 and upper == upper.upper()
    assert len(fresh_identifier("not-hex")) == 32
