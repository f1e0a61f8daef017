"""What makes a request body acceptable to the simulator; pure functions.

Each check returns the `Problem` with the first thing wrong, or None. Messages name
keys as they are spelled on the wire (`transactionParameters.amount is missing`).
Values that arrive with the wrong JSON type never get here: `parse` refuses them,
and the session answers PARAMETER_INVALID.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal

import attrs

from p3log.protocol.dialect import Dialect
from p3log.protocol.model import (
    AmendTransactionRequest,
    ExecuteTransactionRequest,
    LoginMerchantRequest,
    SubmitSignatureRequest,
)
from p3log.sim.devices import DevicesConfig
from p3log.sim.replies import Problem

__all__ = [
    "AMEND_TYPES",
    "PROVIDER_MODES",
    "TRANSACTION_TYPES",
    "SignatureAnswer",
    "check_amend",
    "check_execute",
    "check_login",
    "check_signature",
]

PROVIDER_MODES = frozenset({"MOCK", "JUNGLE", "TEST", "TEST_FIXED", "LIVE", "LIVE_FIXED"})
TRANSACTION_TYPES = frozenset(
    {"CHARGE", "REFUND", "PREAUTHORIZE", "CREDIT", "ACTIVATION", "BALANCE_INQUIRY", "CASHOUT"}
)
AMEND_TYPES = frozenset({"REFUND", "CAPTURE", "TIP_ADJUST"})
MODES = frozenset({"ONLINE", "OFFLINE"})
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CURRENCY = re.compile(r"[A-Z]{3}")


def check_login(body: object, devices: DevicesConfig) -> Problem | None:
    """The three required fields, the provider mode, then the configured credentials."""
    if not isinstance(body, LoginMerchantRequest):
        return Problem.missing("loginMerchantRequest")
    for key, value in (
        ("providerMode", body.provider_mode),
        ("merchantIdentifier", body.merchant_identifier),
        ("merchantSecret", body.merchant_secret),
    ):
        if not value:
            return Problem.missing(f"loginMerchantRequest.{key}")
    assert body.merchant_identifier is not None and body.merchant_secret is not None
    if body.provider_mode not in PROVIDER_MODES:
        return Problem.invalid(f"providerMode {body.provider_mode!r} is not a provider mode")
    if not devices.accepts(body.merchant_identifier, body.merchant_secret):
        return Problem(
            "SERVER_AUTHENTICATION_FAILED", "SERVER", "unknown merchant or wrong merchant secret"
        )
    return None


def check_execute(body: object) -> Problem | None:
    """`transactionParameters` with amount, currency, type and autoCapture, all sensible."""
    if not isinstance(body, ExecuteTransactionRequest):
        return Problem.missing("executeTransactionRequest")
    if body.mode is not None and body.mode not in MODES:
        return Problem.invalid(f"mode {body.mode!r} is not ONLINE or OFFLINE")
    params = body.transaction_parameters
    if params is None:
        return Problem.missing("transactionParameters")
    for key, value in (
        ("amount", params.amount),
        ("currency", params.currency),
        ("type", params.type),
        ("autoCapture", params.auto_capture),
    ):
        if value is None:
            return Problem.missing(f"transactionParameters.{key}")
    assert params.amount is not None and params.currency is not None
    return (
        _amount_problem("transactionParameters.amount", params.amount)
        or _currency_problem(params.currency)
        or (
            None
            if params.type in TRANSACTION_TYPES
            else Problem.invalid(f"transactionParameters.type {params.type!r} is not known")
        )
    )


def check_amend(body: object) -> Problem | None:
    """A known amend type, the referenced identifier, and an amount where one is needed."""
    if not isinstance(body, AmendTransactionRequest):
        return Problem.missing("amendTransactionRequest")
    params = body.transaction_parameters
    if params is None:
        return Problem.missing("transactionParameters")
    if params.type is None:
        return Problem.missing("transactionParameters.type")
    if params.type not in AMEND_TYPES:
        return Problem.invalid(
            f"transactionParameters.type {params.type!r} is not REFUND, CAPTURE or TIP_ADJUST"
        )
    if not params.referenced_transaction_identifier:
        return Problem.missing("transactionParameters.referencedTransactionIdentifier")
    if params.type == "TIP_ADJUST" and params.amount is None:
        return Problem.missing("transactionParameters.amount")
    if params.amount is not None:
        allow_zero = params.type == "TIP_ADJUST"
        problem = _amount_problem("transactionParameters.amount", params.amount, allow_zero)
        if problem:
            return problem
    return _currency_problem(params.currency) if params.currency is not None else None


@attrs.frozen
class SignatureAnswer:
    """A valid answer to the signature action."""

    on_receipt: bool
    png: bytes | None = attrs.field(default=None, repr=False)  # personal data


def check_signature(body: object, dialect: Dialect) -> SignatureAnswer | Problem:
    """Either a base64 PNG signature or `signOnReceipt: true` (keys per the dialect)."""
    signature_key = dialect.signature.signature_key
    on_receipt_key = dialect.signature.on_receipt_key
    if not isinstance(body, SubmitSignatureRequest):
        return Problem.missing("submitSignatureRequest")
    if body.signature is not None and body.sign_on_receipt:
        return Problem.invalid(f"give {signature_key} or {on_receipt_key}, not both")
    if body.sign_on_receipt:
        return SignatureAnswer(on_receipt=True)
    if body.signature is None:
        return Problem.missing(f"{signature_key} (or {on_receipt_key}: true)")
    try:
        png = base64.b64decode(body.signature, validate=True)
    except binascii.Error:
        return Problem.invalid(f"{signature_key} is not base64")
    if not png.startswith(PNG_MAGIC):
        return Problem.invalid(f"{signature_key} is not a PNG image")
    return SignatureAnswer(on_receipt=False, png=png)


def _amount_problem(key: str, amount: Decimal, allow_zero: bool = False) -> Problem | None:
    if amount < 0 or (amount == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        return Problem.invalid(f"{key} must be {bound}, not {amount}")
    return None


def _currency_problem(currency: str) -> Problem | None:
    if _CURRENCY.fullmatch(currency):
        return None
    return Problem.invalid(f"currency {currency!r} is not an ISO 4217 code")
