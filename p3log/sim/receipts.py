"""Receipts for a successful transaction, built from the transaction object alone.

`data` maps a receipt key to a `{key, label, value}` item; `lines` is the same
receipt preformatted, as newer servers send it. A merchant receipt of a
transaction whose shopper signs on paper ends with a signature line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from p3log.protocol.model import Receipt, Transaction

__all__ = ["receipts"]

_TYPE_LABELS = {"CHARGE": "SALE", "PREAUTHORIZE": "PRE-AUTHORIZATION"}
_WIDTH = 32


def receipts(
    txn: Transaction, merchant: str, *, sign_on_receipt: bool = False
) -> tuple[Receipt, Receipt]:
    """The (merchant, customer) receipts of an approved transaction."""
    return (
        _receipt("MERCHANT RECEIPT", txn, merchant, sign_on_receipt),
        _receipt("CUSTOMER RECEIPT", txn, merchant, False),
    )


def _receipt(title: str, txn: Transaction, merchant: str, signature_line: bool) -> Receipt:
    payment = txn.payment_details
    when = datetime.fromtimestamp((txn.created_timestamp or 0) / 1000, tz=UTC)
    items: list[tuple[str, str, str]] = [
        ("RECEIPT_TYPE", "Receipt", title),
        ("MERCHANT_DETAILS_NAME", "Merchant", merchant),
        ("TRANSACTION_TYPE", "Type", _TYPE_LABELS.get(txn.type or "", txn.type or "")),
        ("AMOUNT_AND_CURRENCY", "Amount", f"{txn.currency} {txn.amount or 0:.2f}"),
    ]
    if payment is not None:
        items += [
            ("PAYMENT_DETAILS_SCHEME_OR_LABEL", "Card", payment.scheme or ""),
            ("PAYMENT_DETAILS_MASKED_ACCOUNT", "Account", payment.masked_account_number or ""),
            ("PAYMENT_DETAILS_CUSTOMER_VERIFICATION", "Verification", _verification(txn)),
        ]
    items += [
        ("STATUS_TEXT", "Status", txn.status or ""),
        ("IDENTIFIER", "Transaction", txn.identifier or ""),
        ("DATE", "Date", when.strftime("%Y-%m-%d")),
        ("TIME", "Time", when.strftime("%H:%M:%S UTC")),
    ]
    data: dict[str, Any] = {
        key: {"key": key, "label": label, "value": value} for key, label, value in items
    }
    lines = [title.center(_WIDTH).rstrip()] + [_line(label, value) for _, label, value in items[1:]]
    if signature_line:
        data["SIGNATURE_LINE"] = {"key": "SIGNATURE_LINE", "label": "Signature", "value": ""}
        lines += ["", "X" + "_" * (_WIDTH - 1), "Cardholder signature"]
    return Receipt(data=data, lines=lines)


def _verification(txn: Transaction) -> str:
    payment = txn.payment_details
    return (payment.customer_verification if payment else None) or "NONE"


def _line(label: str, value: str) -> str:
    gap = max(1, _WIDTH - len(label) - len(value))
    return f"{label}{' ' * gap}{value}"
