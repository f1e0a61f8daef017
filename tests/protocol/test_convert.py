"""The converter: lossless both ways, strict about types, shaped by the dialect."""

import functools
import operator
from decimal import Decimal
from types import NoneType, UnionType
from typing import Any, get_args, get_origin

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p3log.protocol import model
from p3log.protocol.convert import FieldTypeError, P3Converter, converter_for
from p3log.protocol.dialect import AbortRules, ActionRules, Dialect, ErrorRules, SignatureRules
from p3log.protocol.model import (
    AbortTransactionRequest,
    AmendTransactionRequest,
    Device,
    ExecuteTransactionAction,
    LoginMerchantRequest,
    LoginMerchantResponse,
    Message,
    MessageType,
    P3Error,
    SubmitSignatureRequest,
    Transaction,
    TransactionParameters,
    UnknownBody,
    WireObject,
    body_key,
    camel_case,
)
from p3log.protocol.parse import parse, serialize

CONVERTER = converter_for(Dialect())
ENVELOPE_KEYS = frozenset({"type", "tag", "resource", "status", "error"})
RECORD_CLASSES = [
    cls
    for cls in vars(model).values()
    if isinstance(cls, type) and issubclass(cls, WireObject) and cls not in (WireObject, Message)
]
BODY_CLASSES = {str(t): CONVERTER.body_class(t) for t in MessageType}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
texts = st.text(max_size=8)


def fields_of(cls):
    return [
        f for f in attrs.fields(attrs.resolve_types(cls)) if f.name not in {"extra", "null_keys"}
    ]


def without_none(tp):
    if get_origin(tp) is UnionType:
        (inner,) = [a for a in get_args(tp) if a is not NoneType]
        return inner
    return tp


def unknown_keys(known):
    return st.text(max_size=8).filter(lambda key: key not in known)


def extra_keys(cls):
    return st.dictionaries(
        unknown_keys({camel_case(f.name) for f in fields_of(cls)}), json_values, max_size=2
    )


def strategy_for(tp, of_record):
    """Values of type `tp`; `of_record` gives the strategy for a model class."""
    if isinstance(tp, type) and issubclass(tp, WireObject):
        return of_record(tp)
    if get_origin(tp) is list:
        return st.lists(strategy_for(get_args(tp)[0], of_record), max_size=2)
    if get_origin(tp) is dict:
        return st.dictionaries(texts, strategy_for(get_args(tp)[1], of_record), max_size=2)
    return {
        str: texts,
        int: st.integers(),
        bool: st.booleans(),
        # Any JSON number fills a Decimal field; integers come back as equal Decimals.
        Decimal: st.integers() | st.decimals(allow_nan=False, allow_infinity=False),
        Any: json_values,
    }[tp]


# --- model objects -------------------------------------------------------------------


def with_nulls(cls, values, extra, null_candidates):
    # Only attributes without a value can have arrived as null.
    unset = {name for name, value in values.items() if value is None}
    return cls(**values, extra=extra, null_keys=frozenset(null_candidates) & unset)


@functools.cache
def records(cls):
    """Model objects of class `cls`: any fields set, unset or null, and extra keys."""
    fields = fields_of(cls)
    values = st.fixed_dictionaries(
        {f.name: st.none() | strategy_for(without_none(f.type), records) for f in fields}
    )
    nulls = st.frozensets(st.sampled_from([f.name for f in fields])) if fields else st.just(())
    return st.builds(functools.partial(with_nulls, cls), values, extra_keys(cls), nulls)


def unknown_type_is_usable(msg_type):
    return msg_type not in BODY_CLASSES and body_key(msg_type) not in ENVELOPE_KEYS


unknown_types = st.text(max_size=12).filter(unknown_type_is_usable)


@st.composite
def messages(draw):
    msg_type = draw(st.sampled_from(sorted(BODY_CLASSES)) | unknown_types)
    body_cls = BODY_CLASSES.get(msg_type)
    unknown_bodies = st.builds(UnknownBody, st.dictionaries(texts, json_values, max_size=3))
    envelope = {
        "tag": draw(st.none() | texts),
        "resource": draw(st.none() | texts),
        "status": draw(st.none() | texts),
        "error": draw(st.none() | records(P3Error)),
        "body": draw(st.none() | (records(body_cls) if body_cls else unknown_bodies)),
    }
    extra_keys = unknown_keys(ENVELOPE_KEYS | {body_key(msg_type)})
    extra = draw(st.dictionaries(extra_keys, json_values, max_size=2))
    nulls = draw(st.frozensets(st.sampled_from(sorted(envelope))))
    return with_nulls(Message, {"type": msg_type, **envelope}, extra, nulls)


@given(st.sampled_from(RECORD_CLASSES).flatmap(records))
def test_records_survive_unstructure_then_structure(record):
    again = CONVERTER.structure(CONVERTER.unstructure(record), type(record))
    assert again == record
    assert again.null_keys == record.null_keys


@given(messages())
def test_messages_survive_unstructure_then_structure(message):
    again = CONVERTER.structure_message(CONVERTER.unstructure_message(message))
    assert again == message
    assert again.null_keys == message.null_keys


@given(messages())
def test_messages_survive_the_trip_through_json_text(message):
    assert parse(serialize(message)) == message


# --- wire objects --------------------------------------------------------------------


@functools.cache
def wire_objects(cls):
    """JSON objects a peer may send for `cls`: keys present, absent or null, and unknown."""
    optional = {
        camel_case(f.name): st.none() | strategy_for(without_none(f.type), wire_objects)
        for f in fields_of(cls)
    }
    known = st.fixed_dictionaries({}, optional=optional)
    return st.builds(operator.or_, known, extra_keys(cls))


@st.composite
def wire_messages(draw):
    msg_type = draw(st.sampled_from(sorted(BODY_CLASSES)) | unknown_types)
    body_cls = BODY_CLASSES.get(msg_type)
    optional = {
        "tag": st.none() | texts,
        "resource": st.none() | texts,
        "status": st.none() | texts,
        "error": st.none() | wire_objects(P3Error),
        # An unknown type's body may be anything; a non-object one stays in `extra`.
        body_key(msg_type): st.none() | (wire_objects(body_cls) if body_cls else json_values),
    }
    obj = {"type": msg_type} | draw(st.fixed_dictionaries({}, optional=optional))
    extra_keys = unknown_keys(ENVELOPE_KEYS | {body_key(msg_type)})
    return obj | draw(st.dictionaries(extra_keys, json_values, max_size=2))


@given(
    st.sampled_from(RECORD_CLASSES).flatmap(lambda cls: st.tuples(st.just(cls), wire_objects(cls)))
)
def test_wire_objects_survive_structure_then_unstructure(cls_and_obj):
    cls, obj = cls_and_obj
    assert CONVERTER.unstructure(CONVERTER.structure(obj, cls)) == obj


@given(wire_messages())
def test_wire_messages_survive_structure_then_unstructure(obj):
    assert CONVERTER.unstructure_message(CONVERTER.structure_message(obj)) == obj


# --- keys, nulls and unknowns --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("merchant_secret", "merchantSecret"),
        ("referenced_transaction_identifier", "referencedTransactionIdentifier"),
        ("tag", "tag"),
    ],
)
def test_attribute_names_become_camel_case_keys(name, wire):
    assert camel_case(name) == wire


def test_body_key_is_the_type_in_camel_case():
    assert body_key("LOGIN_MERCHANT_REQUEST") == "loginMerchantRequest"
    assert body_key("EXECUTE_TRANSACTION_UPDATE") == "executeTransactionUpdate"


def test_an_explicit_null_is_written_back_and_an_absent_key_is_not():
    amend = CONVERTER.structure_message(
        {"type": "AMEND_TRANSACTION_REQUEST", "resource": None, "amendTransactionRequest": {}}
    )
    login = CONVERTER.structure_message(
        {"type": "LOGIN_MERCHANT_REQUEST", "loginMerchantRequest": {}}
    )
    assert amend.resource is None and amend.null_keys == {"resource"}
    assert "resource" in CONVERTER.unstructure_message(amend)
    assert "resource" not in CONVERTER.unstructure_message(login)


def test_null_keys_take_no_part_in_equality():
    assert Message(type="X", null_keys=frozenset({"tag"})) == Message(type="X")


def test_unknown_keys_are_kept_at_every_level():
    obj = {
        "type": "EXECUTE_TRANSACTION_RESPONSE",
        "traceId": "t-1",
        "executeTransactionResponse": {
            "transaction": {"amount": 5, "statusDetails": {"code": "X", "hint": [1]}},
            "newField": {"deep": True},
        },
    }
    message = CONVERTER.structure_message(obj)
    assert message.extra == {"traceId": "t-1"}
    assert message.body.extra == {"newField": {"deep": True}}
    assert message.body.transaction.status_details.extra == {"hint": [1]}
    assert CONVERTER.unstructure_message(message) == obj


def test_unknown_message_types_keep_their_body():
    obj = {"type": "PING_REQUEST", "tag": "p", "pingRequest": {"echo": "x"}}
    message = CONVERTER.structure_message(obj)
    assert message.body == UnknownBody({"echo": "x"})
    assert message.extra == {}
    assert CONVERTER.unstructure_message(message) == obj


def test_an_unknown_types_non_object_body_stays_in_extra():
    obj = {"type": "PING_REQUEST", "pingRequest": [1, 2]}
    message = CONVERTER.structure_message(obj)
    assert message.body is None
    assert message.extra == {"pingRequest": [1, 2]}
    assert CONVERTER.unstructure_message(message) == obj


def test_a_known_field_wins_over_an_extra_key_of_the_same_name():
    device = Device(name="reader", extra={"name": "shadow", "other": 1})
    assert CONVERTER.unstructure(device) == {"name": "reader", "other": 1}


def test_a_type_whose_body_key_is_an_envelope_key_has_no_body():
    message = CONVERTER.structure_message({"type": "TAG", "tag": "t"})
    assert message.tag == "t" and message.body is None


def test_a_body_that_does_not_fit_the_type_is_refused():
    message = Message(type="LOGIN_MERCHANT_REQUEST", body=LoginMerchantResponse())
    with pytest.raises(ValueError, match="needs a LoginMerchantRequest body"):
        CONVERTER.unstructure_message(message)


# --- amounts -------------------------------------------------------------------------


def test_any_json_number_fills_a_decimal_field():
    def amount(value: Any) -> Any:
        return CONVERTER.structure({"amount": value}, TransactionParameters).amount

    assert amount(10) == Decimal(10) and isinstance(amount(10), Decimal)
    assert str(amount(Decimal("10.50"))) == "10.50"
    assert str(amount(10.5)) == "10.5"  # a Python float, by its shortest text


@pytest.mark.parametrize("value", [True, "10.50", Decimal("NaN"), float("inf")])
def test_non_numbers_and_non_finite_numbers_do_not_fill_a_decimal_field(value):
    with pytest.raises(FieldTypeError, match="amount: expected"):
        CONVERTER.structure({"amount": value}, TransactionParameters)


# --- strict types and paths ----------------------------------------------------------

# For each field type, JSON values of other types (None is always allowed: null).
WRONG_VALUES: dict[Any, list[Any]] = {
    str: [5, True, [], {}],
    int: ["5", True, Decimal("1.5"), {}],
    bool: [1, "true", []],
    Decimal: ["10", True, []],
    list: ["x", {}, 1],
    dict: ["x", [], 1],
    WireObject: ["x", [], 1],
}


def wrong_values(tp: Any) -> list[Any]:
    if isinstance(tp, type) and issubclass(tp, WireObject):
        return WRONG_VALUES[WireObject]
    return WRONG_VALUES[get_origin(tp) or tp]


@pytest.mark.parametrize(
    ("cls", "field"),
    [(cls, f) for cls in RECORD_CLASSES for f in fields_of(cls)],
    ids=lambda x: x.__name__ if isinstance(x, type) else x.name,
)
def test_every_field_rejects_values_of_another_json_type(cls, field):
    key = camel_case(field.name)
    for value in wrong_values(without_none(field.type)):
        with pytest.raises(FieldTypeError) as caught:
            CONVERTER.structure({key: value}, cls)
        assert caught.value.path == (key,)


def test_the_error_names_the_json_path_of_the_field():
    obj = {
        "type": "EXECUTE_TRANSACTION_REQUEST",
        "executeTransactionRequest": {"transactionParameters": {"amount": "10.50"}},
    }
    with pytest.raises(FieldTypeError) as caught:
        CONVERTER.structure_message(obj)
    assert str(caught.value) == (
        "executeTransactionRequest.transactionParameters.amount: expected number, got string"
    )


def test_paths_show_list_indexes_and_quote_odd_keys():
    devices = {
        "type": "LOGIN_MERCHANT_RESPONSE",
        "loginMerchantResponse": {"devices": [{}, {"name": 1}]},
    }
    with pytest.raises(FieldTypeError, match=r"^loginMerchantResponse\.devices\[1\]\.name: "):
        CONVERTER.structure_message(devices)
    metadata = {"details": {"metadata": {"a key\n": 7}}}
    with pytest.raises(FieldTypeError, match=r'^details\.metadata\["a key\\n"\]: expected string'):
        CONVERTER.structure(metadata, Transaction)


def test_a_message_needs_a_string_type():
    with pytest.raises(FieldTypeError, match=r"^type: expected string, got nothing$"):
        CONVERTER.structure_message({"tag": "x"})


# --- the dialect ---------------------------------------------------------------------


def test_the_dialect_names_the_action_key():
    converter = P3Converter(Dialect(action=ActionRules(action_key="actionType")))
    obj = {
        "type": "EXECUTE_TRANSACTION_ACTION",
        "executeTransactionAction": {"actionType": "SIGNATURE"},
    }
    message = converter.structure_message(obj)
    assert message.body == ExecuteTransactionAction(action="SIGNATURE")
    assert converter.unstructure_message(message) == obj
    # The default dialect does not know that key, and keeps it as extra.
    assert CONVERTER.structure_message(obj).body.extra == {"actionType": "SIGNATURE"}


def test_the_dialect_names_the_signature_keys():
    dialect = Dialect(signature=SignatureRules(signature_key="image", on_receipt_key="paper"))
    body = SubmitSignatureRequest(signature="iVBOR", sign_on_receipt=False)
    assert P3Converter(dialect).unstructure(body) == {"image": "iVBOR", "paper": False}


def test_the_dialect_names_the_error_keys():
    dialect = Dialect(error=ErrorRules(type_key="code", source_key="origin", message_key="text"))
    obj = {
        "type": "ABORT_TRANSACTION_RESPONSE",
        "status": "ERROR",
        "error": {"code": "X", "origin": "SDK", "text": "no"},
    }
    message = P3Converter(dialect).structure_message(obj)
    assert message.error == P3Error(type="X", source="SDK", message="no")


def test_the_dialect_names_the_abort_messages():
    dialect = Dialect(
        abort=AbortRules(request_type="ABORT_OPERATION_REQUEST", tag_key="executeTag")
    )
    converter = P3Converter(dialect)
    obj = {"type": "ABORT_OPERATION_REQUEST", "abortOperationRequest": {"executeTag": "t1"}}
    message = converter.structure_message(obj)
    assert message.body == AbortTransactionRequest(transaction_tag="t1")
    assert converter.unstructure_message(message) == obj
    # Under that dialect the default name is just an unknown type.
    assert converter.body_class("ABORT_TRANSACTION_REQUEST") is None


def test_a_dialect_that_gives_two_fields_one_key_is_refused():
    clash = Dialect(signature=SignatureRules(signature_key="signOnReceipt"))
    with pytest.raises(ValueError, match="same key"):
        P3Converter(clash)


def test_a_dialect_whose_abort_name_is_taken_is_refused():
    with pytest.raises(ValueError, match="already another message type"):
        P3Converter(Dialect(abort=AbortRules(request_type="EXECUTE_TRANSACTION_REQUEST")))


def test_converters_are_shared_per_dialect():
    assert converter_for(Dialect()) is converter_for(Dialect())
    assert converter_for(Dialect(lenient_json=True)) is not converter_for(Dialect())


def test_structure_of_a_message_through_the_generic_entry_point():
    obj = {"type": "AMEND_TRANSACTION_REQUEST", "amendTransactionRequest": {"mode": "ONLINE"}}
    assert CONVERTER.structure(obj, Message).body == AmendTransactionRequest(mode="ONLINE")
    assert CONVERTER.unstructure(Message(type="X", tag="t")) == {"type": "X", "tag": "t"}


def test_transaction_fields_are_typed():
    transaction = CONVERTER.structure(
        {"createdTimestamp": 1700000000000, "captured": True, "amount": 1.25}, Transaction
    )
    assert transaction == Transaction(
        created_timestamp=1700000000000, captured=True, amount=Decimal("1.25")
    )
    assert CONVERTER.structure({"merchantSecret": "s"}, LoginMerchantRequest).merchant_secret == "s"
