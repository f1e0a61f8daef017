"""What a message type is, under the default dialect and one whose abort is no `*_REQUEST`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p3log.protocol.dialect import AbortRules, Dialect
from p3log.protocol.kinds import Kind, Kinds, Step

CANCEL = Kinds(
    Dialect(abort=AbortRules(request_type="CANCEL_PAYMENT", response_type="CANCEL_PAYMENT_ACK"))
)


def test_the_dialects_abort_is_a_request_answered_by_its_response() -> None:
    assert CANCEL.of("CANCEL_PAYMENT") is Kind.REQUEST
    assert CANCEL.of("CANCEL_PAYMENT_ACK") is Kind.RESPONSE
    assert CANCEL.response_to("CANCEL_PAYMENT") == "CANCEL_PAYMENT_ACK"
    assert CANCEL.step("CANCEL_PAYMENT_ACK", had_update=False) is Step.RESPONSE
    assert "CANCEL_PAYMENT_ACK" in CANCEL.answers()


def test_the_default_kinds() -> None:
    kinds = Kinds()
    assert kinds.response_to("LOGIN_MERCHANT_REQUEST") == "LOGIN_MERCHANT_RESPONSE"
    assert kinds.response_to("_REQUEST") is None
    assert kinds.response_to("EXECUTE_TRANSACTION_UPDATE") is None
    assert kinds.progress_of("EXECUTE_TRANSACTION_REQUEST") == {
        "EXECUTE_TRANSACTION_UPDATE",
        "EXECUTE_TRANSACTION_ACTION",
    }
    assert kinds.step("EXECUTE_TRANSACTION_UPDATE", had_update=False) is Step.FIRST_UPDATE
    assert kinds.step("EXECUTE_TRANSACTION_UPDATE", had_update=True) is None
    assert kinds.step("EXECUTE_TRANSACTION_ACTION", had_update=True) is Step.ACTION
    assert kinds.of(None) is Kind.OTHER


@given(st.text(max_size=40))
def test_every_request_has_a_response_of_the_response_kind(msg_type: str) -> None:
    for kinds in (Kinds(), CANCEL):
        response = kinds.response_to(msg_type)
        if response is not None:
            assert kinds.of(msg_type) is Kind.REQUEST
            assert kinds.of(response) is Kind.RESPONSE
