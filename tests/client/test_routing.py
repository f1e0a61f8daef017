"""The client's routing core on plain data: open tags, plans, rule names."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from p3log.client.routing import Deliver, Router, Stray
from p3log.protocol.dialect import AbortRules, Dialect
from p3log.protocol.parse import parse
from p3log.protocol.rules import Rule


def _route(router: Router, **message: object) -> Deliver | Stray:
    data = json.dumps(message).encode()
    return router.route(parse(data, Dialect()), data)


def test_an_execute_gets_its_updates_and_actions_then_its_response() -> None:
    router = Router()
    router.open("t1", "EXECUTE_TRANSACTION_REQUEST")
    update = _route(router, type="EXECUTE_TRANSACTION_UPDATE", tag="t1")
    action = _route(router, type="EXECUTE_TRANSACTION_ACTION", tag="t1")
    response = _route(router, type="EXECUTE_TRANSACTION_RESPONSE", tag="t1", status="OK")
    assert [(p.tag, p.final) for p in (update, action, response) if isinstance(p, Deliver)] == [
        ("t1", False),
        ("t1", False),
        ("t1", True),
    ]
    late = _route(router, type="EXECUTE_TRANSACTION_UPDATE", tag="t1")
    assert isinstance(late, Stray) and late.violation.rule is Rule.MESSAGE_AFTER_RESPONSE
    assert not router.is_open("t1")


def test_the_dialects_abort_is_answered_by_the_dialects_response() -> None:
    dialect = Dialect(abort=AbortRules(request_type="CANCEL_PAYMENT", response_type="CANCEL_ACK"))
    router = Router(dialect)
    assert router.open("a1", "CANCEL_PAYMENT").response_type == "CANCEL_ACK"
    plan = _route(router, type="CANCEL_ACK", tag="a1", status="OK")
    assert isinstance(plan, Deliver) and plan.final


def test_a_response_of_another_type_ends_the_request_it_answers() -> None:
    router = Router()
    router.open("l1", "LOGIN_MERCHANT_REQUEST")
    wrong = _route(router, type="ERROR_RESPONSE", tag="l1", status="ERROR")
    assert isinstance(wrong, Stray) and wrong.violation.rule is Rule.UNEXPECTED_TYPE
    assert wrong.ends == "l1" and wrong.error is not None
    router.open("l2", "LOGIN_MERCHANT_REQUEST")
    stray = _route(router, type="EXECUTE_TRANSACTION_UPDATE", tag="l2")
    assert isinstance(stray, Stray) and stray.ends is None and router.is_open("l2")


def test_the_client_names_rules_as_the_fold_does() -> None:
    router = Router()
    router.open("l1", "LOGIN_MERCHANT_REQUEST")
    rules = [
        _route(router, type="LOGIN_MERCHANT_RESPONSE", tag=None),
        _route(router, type="LOGIN_MERCHANT_RESPONSE", tag="nobody"),
        router.route(parse(b"{not json", Dialect()), b"{not json"),
    ]
    assert [p.violation.rule for p in rules if isinstance(p, Stray)] == [
        Rule.NO_TAG,
        Rule.UNKNOWN_TAG,
        Rule.MALFORMED_MESSAGE,
    ]
    assert Rule.MALFORMED_MESSAGE == "malformed_message"


def test_answered_tags_are_remembered_up_to_a_bound() -> None:
    router = Router(answered_kept=2)
    for tag in ("a", "b", "c"):
        router.open(tag, "LOGIN_MERCHANT_REQUEST")
        router.answered(tag)
    oldest = _route(router, type="LOGIN_MERCHANT_RESPONSE", tag="a")
    newest = _route(router, type="LOGIN_MERCHANT_RESPONSE", tag="c")
    assert isinstance(oldest, Stray) and oldest.violation.rule is Rule.UNKNOWN_TAG
    assert isinstance(newest, Stray) and newest.violation.rule is Rule.MESSAGE_AFTER_RESPONSE


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(
                lambda t, tag, status: json.dumps(
                    {"type": t, "tag": tag, "status": status}
                ).encode(),
                st.sampled_from(
                    [
                        "LOGIN_MERCHANT_RESPONSE",
                        "EXECUTE_TRANSACTION_UPDATE",
                        "EXECUTE_TRANSACTION_RESPONSE",
                        "ERROR_RESPONSE",
                        "X",
                    ]
                ),
                st.sampled_from(["t1", "t2", None, 3]),
                st.sampled_from(["OK", "ERROR", None]),
            ),
        ),
        max_size=20,
    )
)
def test_hostile_bytes_get_a_plan_and_never_reopen_a_tag(messages: list[bytes]) -> None:
    router = Router()
    router.open("t1", "EXECUTE_TRANSACTION_REQUEST")
    router.open("t2", "LOGIN_MERCHANT_REQUEST")
    ended: set[str] = set()
    for data in messages:
        plan = router.route(parse(data, Dialect()), data)
        if isinstance(plan, Deliver):
            assert plan.tag not in ended
            if plan.final:
                ended.add(plan.tag)
        else:
            assert plan.violation.rule in set(Rule)
            assert plan.violation.data == data
            if plan.ends is not None:
                assert plan.ends not in ended
                ended.add(plan.ends)
        assert all(not router.is_open(tag) for tag in ended)
