"""parse, read_envelope and serialize: typed messages from bytes, never an exception."""

import json
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p3log.protocol import model
from p3log.protocol.convert import converter_for
from p3log.protocol.dialect import Dialect
from p3log.protocol.jsontext import loads
from p3log.protocol.model import (
    AbortTransactionRequest,
    AbortTransactionResponse,
    AmendTransactionRequest,
    AmendTransactionResponse,
    AmendTransactionUpdate,
    ExecuteTransactionAction,
    ExecuteTransactionRequest,
    ExecuteTransactionResponse,
    ExecuteTransactionUpdate,
    LoginMerchantRequest,
    LoginMerchantResponse,
    Message,
    MessageType,
    SubmitSignatureRequest,
    SubmitSignatureResponse,
    Transaction,
    body_key,
    camel_case,
)
from p3log.protocol.parse import (
    Envelope,
    Malformed,
    MalformedReason,
    parse,
    read_envelope,
    serialize,
)

TRANSACTION = """{
  "identifier": "0123456789abcdef0123456789abcdef", "amount": 10.50, "currency": "EUR",
  "type": "CHARGE", "status": "PENDING", "statusDetails": {"code": "PENDING"},
  "mode": "ONLINE", "captured": false, "createdTimestamp": 1700000000000,
  "details": {"applicationFee": 0.10, "includedTipAmount": 1.00,
              "metadata": {"table": "4"}, "tipAdjustStatus": "NOT_TIP_ADJUSTABLE"},
  "paymentDetails": {"scheme": "VISA", "source": "ICC", "customerVerification": "SIGNATURE",
                     "maskedAccountNumber": "**** **** **** 0119"},
  "cardDetails": {"expiryMonth": 12, "expiryYear": 2030, "maskedCardNumber": "**** 0119"},
  "shopperDetails": {"email": null}, "refundDetails": {"refundable": true},
  "dccDetails": {}, "customIdentifier": "order-17", "subject": "Flowers"
}"""

RECEIPT = """{
  "data": {"RECEIPT_TYPE": {"key": "RECEIPT_TYPE", "label": "Receipt Type",
                            "value": "Merchant Receipt"}},
  "lines": ["Merchant Receipt", "EUR 10.50"]
}"""

# One message of every type docs/protocol.md documents, following its flows (section 6).
EXAMPLES = {
    "LOGIN_MERCHANT_REQUEST": (
        LoginMerchantRequest,
        """{"tag": "t1", "type": "LOGIN_MERCHANT_REQUEST", "loginMerchantRequest":
            {"providerMode": "TEST", "merchantIdentifier": "m-1", "merchantSecret": "s3cret"}}""",
    ),
    "LOGIN_MERCHANT_RESPONSE": (
        LoginMerchantResponse,
        """{"tag": "t1", "type": "LOGIN_MERCHANT_RESPONSE", "status": "OK", "loginMerchantResponse":
            {"information": {"location": "3rd Room"}, "devices": [{"name": "Reader",
             "identifier": "r-1", "resource": "devices/usbReader", "type": "MIURA",
             "comlink": "USB"}]}}""",
    ),
    "EXECUTE_TRANSACTION_REQUEST": (
        ExecuteTransactionRequest,
        """{"tag": "t2", "type": "EXECUTE_TRANSACTION_REQUEST", "resource": "devices/usbReader",
            "executeTransactionRequest": {"mode": "ONLINE", "sessionIdentifier": "s-1",
             "transactionParameters": {"amount": 10.50, "currency": "EUR", "type": "CHARGE",
              "autoCapture": true, "subject": "Flowers", "customIdentifier": "order-17",
              "statementDescriptor": "FLOWERS", "applicationFee": 0.10, "includedTipAmount": 1,
              "metadata": {"table": "4"}, "tipAdjustable": false,
              "workflow": "ALTERNATIVE_PAYMENT_METHOD"},
             "accountParameters": {"shopperAccountIdentifier": "2880", "source": "QR_CODE",
              "scheme": "ALIPAY"},
             "processParameters": {"steps": {"askForTip": {"suggestedAmount": 1.50,
              "maxTipAmount": 5, "showAddTipConfirmationScreen": true,
              "showTotalAmountConfirmationScreen": false}}}}}""",
    ),
    "EXECUTE_TRANSACTION_UPDATE": (
        ExecuteTransactionUpdate,
        f"""{{"tag": "t2", "type": "EXECUTE_TRANSACTION_UPDATE", "resource": "devices/usbReader",
            "status": "OK", "executeTransactionUpdate": {{"state": "PROCESSING",
             "stateDetails": "PROCESSING_WAITING_FOR_PIN", "information": ["Enter PIN", ""],
             "abortable": true, "transaction": {TRANSACTION}}}}}""",
    ),
    "EXECUTE_TRANSACTION_ACTION": (
        ExecuteTransactionAction,
        f"""{{"tag": "t2", "type": "EXECUTE_TRANSACTION_ACTION", "status": "OK",
            "executeTransactionAction": {{"action": "SIGNATURE",
             "transaction": {TRANSACTION}}}}}""",
    ),
    "SUBMIT_SIGNATURE_REQUEST": (
        SubmitSignatureRequest,
        """{"tag": "t3", "type": "SUBMIT_SIGNATURE_REQUEST", "resource": "devices/usbReader",
            "submitSignatureRequest": {"signature": "iVBORw0KGgo="}}""",
    ),
    "SUBMIT_SIGNATURE_RESPONSE": (
        SubmitSignatureResponse,
        """{"tag": "t3", "type": "SUBMIT_SIGNATURE_RESPONSE", "status": "ERROR",
            "error": {"type": "TRANSACTION_ACTION_ERROR", "source": "TRANSACTION",
             "message": "signature rejected"}, "submitSignatureResponse": {}}""",
    ),
    "ABORT_TRANSACTION_REQUEST": (
        AbortTransactionRequest,
        """{"tag": "t4", "type": "ABORT_TRANSACTION_REQUEST", "resource": "devices/usbReader",
            "abortTransactionRequest": {}}""",
    ),
    "ABORT_TRANSACTION_RESPONSE": (
        AbortTransactionResponse,
        """{"tag": "t4", "type": "ABORT_TRANSACTION_RESPONSE", "status": "error",
            "error": {"type": "TRANSACTION_NO_LONGER_ABORTABLE", "source": "TRANSACTION"},
            "abortTransactionResponse": {}}""",
    ),
    "EXECUTE_TRANSACTION_RESPONSE": (
        ExecuteTransactionResponse,
        f"""{{"tag": "t2", "type": "EXECUTE_TRANSACTION_RESPONSE", "status": "OK",
            "executeTransactionResponse": {{"transaction": {{"status": "APPROVED",
             "amount": 10.50, "merchantReceipt": {RECEIPT}, "customerReceipt": {RECEIPT}}}}}}}""",
    ),
    "AMEND_TRANSACTION_REQUEST": (
        AmendTransactionRequest,
        """{"tag": "t5", "type": "AMEND_TRANSACTION_REQUEST", "resource": null,
            "amendTransactionRequest": {"mode": "ONLINE", "transactionParameters": {
             "type": "REFUND",
             "referencedTransactionIdentifier": "0123456789abcdef0123456789abcdef",
             "amount": 2.00, "currency": "EUR"}}}""",
    ),
    "AMEND_TRANSACTION_UPDATE": (
        AmendTransactionUpdate,
        """{"tag": "t5", "type": "AMEND_TRANSACTION_UPDATE", "resource": null, "status": "OK",
            "amendTransactionUpdate": {"state": "PROCESSING", "stateDetails": "PROCESSING",
             "information": ["Refunding", "please wait"], "abortable": false}}""",
    ),
    "AMEND_TRANSACTION_RESPONSE": (
        AmendTransactionResponse,
        f"""{{"tag": "t5", "type": "AMEND_TRANSACTION_RESPONSE", "resource": null, "status": "OK",
            "amendTransactionResponse": {{"transaction": {TRANSACTION}}}}}""",
    ),
}


def test_the_examples_cover_every_documented_message_type():
    assert set(EXAMPLES) == set(MessageType)


@pytest.mark.parametrize("msg_type", sorted(EXAMPLES))
def test_every_documented_message_parses_into_its_typed_body(msg_type):
    body_cls, text = EXAMPLES[msg_type]
    message = parse(text.encode())
    assert isinstance(message, Message)
    assert message.type == msg_type
    assert type(message.body) is body_cls
    # Every documented key has an attribute: nothing lands in `extra`.
    assert message.extra == {} and message.body.extra == {}
    transaction = getattr(message.body, "transaction", None)
    if transaction is not None:
        assert transaction.extra == {}
    assert converter_for(Dialect()).unstructure_message(message) == loads(text)[0]


def test_documented_values_arrive_typed():
    message = parse(EXAMPLES["EXECUTE_TRANSACTION_UPDATE"][1])
    assert isinstance(message, Message)
    transaction = message.body.transaction
    assert isinstance(transaction, Transaction)
    assert transaction.amount == Decimal("10.50")
    assert transaction.details.included_tip_amount == Decimal("1.00")
    assert transaction.card_details.expiry_year == 2030
    assert message.body.information == ["Enter PIN", ""]
    assert message.body.abortable is True


def test_an_amount_keeps_its_digits_from_bytes_to_bytes():
    data = (
        b'{"type":"EXECUTE_TRANSACTION_RESPONSE",'
        b'"executeTransactionResponse":{"transaction":{"amount":10.50}}}'
    )
    message = parse(data)
    assert isinstance(message, Message)
    assert message.body.transaction.amount == Decimal("10.50")
    assert serialize(message) == data


def test_serialize_writes_compact_utf8():
    message = Message(type="X_REQUEST", tag="é", resource=None, null_keys=frozenset({"resource"}))
    assert serialize(message) == '{"type":"X_REQUEST","tag":"é","resource":null}'.encode()


@pytest.mark.parametrize(
    ("status", "is_error"),
    [
        ("OK", False),
        ("ok", False),
        ("ERROR", True),
        ("error", True),
        ("ABORTED", True),
        (None, False),
    ],
)
def test_is_error_compares_the_status_case_insensitively(status, is_error):
    assert Message(type="X", status=status).is_error is is_error


# --- malformed input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason", "text"),
    [
        (b'{"type": "\xff"}', MalformedReason.NOT_UTF8, "not UTF-8: invalid start byte at byte 10"),
        (
            b'{"type": "X" "tag": 1}',
            MalformedReason.NOT_JSON,
            "not JSON: Expecting ',' delimiter at line 1 column 14",
        ),
        (
            b'{"amount": NaN, "type": "X"}',
            MalformedReason.NOT_JSON,
            "not JSON: NaN is not a JSON number",
        ),
        (b"[" * 100_000, MalformedReason.NOT_JSON, "not JSON: nested too deeply"),
        (b'["type"]', MalformedReason.NOT_OBJECT, "not an object: got array"),
        (b'{"tag": "t"}', MalformedReason.NO_TYPE, 'no type: there is no "type" key'),
        (b'{"type": 7}', MalformedReason.NO_TYPE, 'no type: "type" is number, not string'),
        (
            b'{"type": "EXECUTE_TRANSACTION_UPDATE",'
            b' "executeTransactionUpdate": {"abortable": "yes"}}',
            MalformedReason.BAD_FIELD,
            "bad field: executeTransactionUpdate.abortable: expected boolean, got string",
        ),
    ],
    ids=lambda x: x.name if isinstance(x, MalformedReason) else None,
)
def test_malformed_input_says_why_in_one_line(data, reason, text):
    result = parse(data)
    assert isinstance(result, Malformed)
    assert result.reason is reason
    assert str(result) == text


def test_malformed_keeps_the_object_when_there_was_one():
    assert parse(b"[1]").obj is None
    assert parse(b'{"type": 1}').obj == {"type": 1}
    bad = b'{"type": "LOGIN_MERCHANT_REQUEST", "loginMerchantRequest": []}'
    assert parse(bad).obj == {"type": "LOGIN_MERCHANT_REQUEST", "loginMerchantRequest": []}


# --- lenient JSON --------------------------------------------------------------------

DOC_STYLE = b"""// as printed in the documentation
{"type": "X_REQUEST", /* c */ "tag": "a",
 // the body
 "xRequest": {"url": "http://x/y", "odd": ",}",},
}"""


def test_strict_parsing_rejects_the_documentations_json():
    result = parse(DOC_STYLE)
    assert isinstance(result, Malformed) and result.reason is MalformedReason.NOT_JSON


def test_lenient_parsing_accepts_it_and_marks_the_message():
    result = parse(DOC_STYLE, lenient=True)
    assert isinstance(result, Message)
    assert result.lenient is True
    assert (result.tag, result.body.data) == ("a", {"url": "http://x/y", "odd": ",}"})


def test_the_dialect_decides_leniency_by_default():
    result = parse(DOC_STYLE, Dialect(lenient_json=True))
    assert isinstance(result, Message) and result.lenient is True
    assert isinstance(parse(DOC_STYLE, Dialect(lenient_json=True), lenient=False), Malformed)


def test_strict_json_is_not_marked_lenient_in_lenient_mode():
    result = parse(b'{"type": "X"}', lenient=True)
    assert isinstance(result, Message) and result.lenient is False


def test_malformed_says_when_leniency_was_needed_to_read_the_json():
    result = parse(b'{"tag": "a",}', lenient=True)
    assert isinstance(result, Malformed)
    assert result.reason is MalformedReason.NO_TYPE and result.lenient is True


# --- the recorder's envelope ---------------------------------------------------------


def test_read_envelope_takes_envelope_strings_without_typing_the_body():
    data = (
        b'{"type": "EXECUTE_TRANSACTION_UPDATE", "tag": "t", "resource": null, "status": 1,'
        b' "executeTransactionUpdate": {"abortable": "yes"}}'
    )
    envelope = read_envelope(data)
    assert envelope == Envelope(
        obj=loads(data.decode())[0],
        msg_type="EXECUTE_TRANSACTION_UPDATE",
        tag="t",
        resource=None,
        status=None,
        lenient=False,
    )


def test_read_envelope_marks_leniency():
    envelope = read_envelope(DOC_STYLE, lenient=True)
    assert isinstance(envelope, Envelope) and envelope.lenient is True
    assert isinstance(read_envelope(DOC_STYLE), Malformed)


# --- never raises --------------------------------------------------------------------


@given(st.binary(), st.booleans())
def test_parse_never_raises_on_bytes(data, lenient):
    assert isinstance(parse(data, lenient=lenient), Message | Malformed)


@given(st.text(), st.booleans())
def test_parse_never_raises_on_text(text, lenient):
    assert isinstance(parse(text, lenient=lenient), Message | Malformed)


# Keys the model knows, so that random objects reach deep into typed structuring.
MODEL_KEYS = sorted(
    {
        camel_case(f.name)
        for cls in vars(model).values()
        if attrs.has(cls)
        for f in attrs.fields(cls)
    }
)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(MODEL_KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)


@given(st.sampled_from(sorted(EXAMPLES)), json_like, json_like)
def test_parse_never_raises_on_json_of_a_known_type(msg_type, body, error):
    obj = {"type": msg_type, body_key(msg_type): body, "error": error}
    result = parse(json.dumps(obj).encode())
    assert isinstance(result, Message | Malformed)
