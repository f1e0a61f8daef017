"""The P3 message model: frozen attrs classes with snake_case attributes.

One class per JSON object in docs/protocol.md. The wire names (camelCase, and the
dialect's choices for the [gap] keys) live in `convert.py`, not here.

Rules every class keeps, so that nothing that arrived is ever lost:

- every field is optional and defaults to None (only `Message.type` is required):
  the model records what a peer sent; judging completeness is the auditor's job;
- `extra` holds the keys we do not know, with their decoded JSON values;
- `null_keys` names the attributes (snake_case, so it survives a dialect change)
  whose key arrived as an explicit JSON `null`, so that `"resource": null` and an
  absent `resource` both round-trip. It is arrival metadata: it takes no part in
  equality, and a field with a value is written whether or not it is named there;
- amounts are `Decimal`, never float; free objects stay `dict[str, Any]`.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeAlias

import attrs


class MessageType(StrEnum):
    """The message names docs/protocol.md documents, spelled as on the wire.

    The abort names are the default dialect's; a dialect may rename them
    (`Dialect.abort.request_type`/`.response_type`), so code that honours a dialect
    compares against those instead.
    """

    LOGIN_MERCHANT_REQUEST = "LOGIN_MERCHANT_REQUEST"
    LOGIN_MERCHANT_RESPONSE = "LOGIN_MERCHANT_RESPONSE"
    EXECUTE_TRANSACTION_REQUEST = "EXECUTE_TRANSACTION_REQUEST"
    EXECUTE_TRANSACTION_UPDATE = "EXECUTE_TRANSACTION_UPDATE"
    EXECUTE_TRANSACTION_ACTION = "EXECUTE_TRANSACTION_ACTION"
    EXECUTE_TRANSACTION_RESPONSE = "EXECUTE_TRANSACTION_RESPONSE"
    ABORT_TRANSACTION_REQUEST = "ABORT_TRANSACTION_REQUEST"
    ABORT_TRANSACTION_RESPONSE = "ABORT_TRANSACTION_RESPONSE"
    SUBMIT_SIGNATURE_REQUEST = "SUBMIT_SIGNATURE_REQUEST"
    SUBMIT_SIGNATURE_RESPONSE = "SUBMIT_SIGNATURE_RESPONSE"
    AMEND_TRANSACTION_REQUEST = "AMEND_TRANSACTION_REQUEST"
    AMEND_TRANSACTION_UPDATE = "AMEND_TRANSACTION_UPDATE"
    AMEND_TRANSACTION_RESPONSE = "AMEND_TRANSACTION_RESPONSE"


def camel_case(snake: str) -> str:
    """`merchant_secret` -> `merchantSecret`: the wire spelling of a name."""
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def status_is_error(status: str | None) -> bool:
    """True when a status is present and is not OK (the docs write both "error" and
    "ERROR", so statuses compare case-insensitively)."""
    return status is not None and status.casefold() != "ok"


def body_key(msg_type: str) -> str:
    """The envelope key of a message's body: `LOGIN_MERCHANT_REQUEST` -> `loginMerchantRequest`."""
    return camel_case(msg_type.lower())


@attrs.frozen
class WireObject:
    """Base of every class that mirrors a JSON object: keeps what we do not model."""

    extra: dict[str, Any] = attrs.field(factory=dict, kw_only=True)
    null_keys: frozenset[str] = attrs.field(default=frozenset(), eq=False, kw_only=True)


# --- shared pieces ---------------------------------------------------------------


@attrs.frozen
class P3Error(WireObject):
    """The envelope's `error` object ([gap]: its keys come from the dialect)."""

    type: str | None = None
    source: str | None = None
    message: str | None = None


@attrs.frozen
class Device(WireObject):
    """A reader from the login response; later requests go to its `resource`."""

    name: str | None = None
    identifier: str | None = None
    resource: str | None = None
    type: str | None = None
    comlink: str | None = None


# --- the transaction object (docs/protocol.md section 5) -------------------------------


@attrs.frozen
class StatusDetails(WireObject):
    code: str | None = None


@attrs.frozen
class TransactionDetails(WireObject):
    application_fee: Decimal | None = None
    included_tip_amount: Decimal | None = None
    metadata: dict[str, str] | None = None
    tip_adjust_status: str | None = None


@attrs.frozen
class PaymentDetails(WireObject):
    scheme: str | None = None
    source: str | None = None
    customer_verification: str | None = None
    masked_account_number: str | None = None


@attrs.frozen
class CardDetails(WireObject):
    expiry_month: int | None = None
    expiry_year: int | None = None
    masked_card_number: str | None = None


@attrs.frozen
class Receipt(WireObject):
    """A receipt attached to a successful transaction.

    `data` maps a receipt key to its entry. The vendor shows entries as
    `{key, label, value}` objects but also iterates lists under some keys
    (merchantDetails, paymentDetails, clearingDetails), so the map stays free JSON
    rather than rejecting a receipt whose shape varies. `lines` is the preformatted
    receipt of newer servers.
    """

    data: dict[str, Any] | None = None
    lines: list[str] | None = None


@attrs.frozen
class Transaction(WireObject):
    identifier: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    type: str | None = None
    status: str | None = None
    status_details: StatusDetails | None = None
    mode: str | None = None
    captured: bool | None = None
    created_timestamp: int | None = None
    details: TransactionDetails | None = None
    payment_details: PaymentDetails | None = None
    card_details: CardDetails | None = None
    shopper_details: dict[str, Any] | None = None
    refund_details: dict[str, Any] | None = None
    dcc_details: dict[str, Any] | None = None
    custom_identifier: str | None = None
    subject: str | None = None
    merchant_receipt: Receipt | None = None
    customer_receipt: Receipt | None = None


# --- login -------------------------------------------------------------------------


@attrs.frozen
class LoginMerchantRequest(WireObject):
    """`merchant_secret` is a credential: p3log never stores it (see store/redact)."""

    provider_mode: str | None = None
    merchant_identifier: str | None = None
    merchant_secret: str | None = None


@attrs.frozen
class LoginMerchantResponse(WireObject):
    information: dict[str, Any] | None = None
    devices: list[Device] | None = None


# --- execute -----------------------------------------------------------------------


@attrs.frozen
class TransactionParameters(WireObject):
    amount: Decimal | None = None
    currency: str | None = None
    type: str | None = None
    auto_capture: bool | None = None
    subject: str | None = None
    custom_identifier: str | None = None
    statement_descriptor: str | None = None
    application_fee: Decimal | None = None
    included_tip_amount: Decimal | None = None
    metadata: dict[str, str] | None = None
    tip_adjustable: bool | None = None
    workflow: str | None = None


@attrs.frozen
class AccountParameters(WireObject):
    """The shopper's account for alternative payment methods (Alipay)."""

    shopper_account_identifier: str | None = None
    source: str | None = None
    scheme: str | None = None


@attrs.frozen
class TipStep(WireObject):
    """The `askForTip` or `askForTotalAmount` step of `processParameters.steps`."""

    suggested_amount: Decimal | None = None
    max_tip_amount: Decimal | None = None
    show_add_tip_confirmation_screen: bool | None = None
    show_total_amount_confirmation_screen: bool | None = None


@attrs.frozen
class ProcessSteps(WireObject):
    ask_for_tip: TipStep | None = None
    ask_for_total_amount: TipStep | None = None


@attrs.frozen
class ProcessParameters(WireObject):
    steps: ProcessSteps | None = None


@attrs.frozen
class ExecuteTransactionRequest(WireObject):
    mode: str | None = None
    transaction_parameters: TransactionParameters | None = None
    session_identifier: str | None = None
    account_parameters: AccountParameters | None = None
    process_parameters: ProcessParameters | None = None


@attrs.frozen
class OperationUpdate(WireObject):
    """Progress of a running execute or amend; `information` is two lines for the POS."""

    state: str | None = None
    state_details: str | None = None
    information: list[str] | None = None
    abortable: bool | None = None
    transaction: Transaction | None = None


@attrs.frozen
class ExecuteTransactionUpdate(OperationUpdate):
    pass


@attrs.frozen
class ExecuteTransactionAction(WireObject):
    """The server waits for an answer ([gap]: the action key comes from the dialect)."""

    action: str | None = None
    transaction: Transaction | None = None


@attrs.frozen
class ExecuteTransactionResponse(WireObject):
    transaction: Transaction | None = None


# --- abort and signature ([gap] bodies, shaped by the dialect) -----------------------


@attrs.frozen
class AbortTransactionRequest(WireObject):
    """Usually empty; with the `body_tag` correlation it names the execute's tag."""

    transaction_tag: str | None = None


@attrs.frozen
class AbortTransactionResponse(WireObject):
    pass


@attrs.frozen
class SubmitSignatureRequest(WireObject):
    """A base64 PNG `signature` (personal data), or `sign_on_receipt`."""

    signature: str | None = None
    sign_on_receipt: bool | None = None


@attrs.frozen
class SubmitSignatureResponse(WireObject):
    pass


# --- amend -------------------------------------------------------------------------


@attrs.frozen
class AmendParameters(WireObject):
    """What to amend: `type` REFUND, CAPTURE or TIP_ADJUST of the referenced transaction."""

    type: str | None = None
    referenced_transaction_identifier: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


@attrs.frozen
class AmendTransactionRequest(WireObject):
    mode: str | None = None
    transaction_parameters: AmendParameters | None = None


@attrs.frozen
class AmendTransactionUpdate(OperationUpdate):
    pass


@attrs.frozen
class AmendTransactionResponse(WireObject):
    transaction: Transaction | None = None


# --- the envelope ------------------------------------------------------------------


@attrs.frozen
class UnknownBody:
    """The body of a message type the dialect does not know, kept whole.

    Only a JSON object under the type's body key becomes an `UnknownBody`; any
    other value stays in `Message.extra` under that key, as it arrived.
    """

    data: dict[str, Any]


Body: TypeAlias = (
    LoginMerchantRequest
    | LoginMerchantResponse
    | ExecuteTransactionRequest
    | ExecuteTransactionUpdate
    | ExecuteTransactionAction
    | ExecuteTransactionResponse
    | AbortTransactionRequest
    | AbortTransactionResponse
    | SubmitSignatureRequest
    | SubmitSignatureResponse
    | AmendTransactionRequest
    | AmendTransactionUpdate
    | AmendTransactionResponse
    | UnknownBody
)


@attrs.frozen
class Message(WireObject):
    """One P3 message: the envelope and its body (under `body_key(type)` on the wire).

    `null_keys` may name `body` when the body key arrived as `null`. `lenient` is
    not on the wire: `parse` sets it when the bytes needed lenient JSON (comments,
    trailing commas) to be read; like `null_keys` it takes no part in equality.
    """

    type: str
    tag: str | None = None
    resource: str | None = None
    status: str | None = None
    error: P3Error | None = None
    body: Body | None = None
    lenient: bool = attrs.field(default=False, eq=False, kw_only=True)

    @property
    def is_error(self) -> bool:
        return status_is_error(self.status)
