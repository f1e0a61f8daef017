"""The benchmarks' message: an EXECUTE_TRANSACTION_UPDATE of realistic shape, ~1 KB."""

from __future__ import annotations

import json

# An EXECUTE_TRANSACTION_UPDATE of realistic shape, about 1 KB.
_TEMPLATE = json.dumps(
    {
        "type": "EXECUTE_TRANSACTION_UPDATE",
        "tag": "%(tag)s",
        "resource": "devices/usbReader",
        "status": "OK",
        "executeTransactionUpdate": {
            "state": "PROCESSING",
            "stateDetails": "PROCESSING_WAITING_FOR_PROCESSOR_APPROVAL",
            "information": ["Processing", "Please wait"],
            "abortable": False,
            "transaction": {
                "identifier": "%(ident)s",
                "amount": "%(amount)s",
                "currency": "EUR",
                "type": "CHARGE",
                "status": "PENDING",
                "statusDetails": {"code": "PENDING"},
                "mode": "ONLINE",
                "captured": False,
                "createdTimestamp": 1764280000000,
                "details": {"applicationFee": 0, "includedTipAmount": 0, "metadata": {"till": "7"}},
                "paymentDetails": {
                    "scheme": "VISA",
                    "source": "NFC_ICC",
                    "customerVerification": "NONE",
                    "maskedAccountNumber": "411111******1111",
                },
                "cardDetails": {
                    "expiryMonth": 12,
                    "expiryYear": 2030,
                    "maskedCardNumber": "************1111",
                    "fingerprint": "c0ffee00c0ffee00c0ffee00c0ffee00",
                },
                "customIdentifier": "order-%(n)d",
                "subject": "Coffee and a croissant, table twelve, with extra oat milk please",
            },
        },
    },
    separators=(",", ":"),
).replace('"%(amount)s"', "%(amount)s")


def message(n: int, tag: str | None = None) -> bytes:
    """Message number `n` (compact JSON); its tag is `tag`, or `tag-<n>`."""
    return (
        _TEMPLATE
        % {
            "n": n,
            "tag": tag or f"tag-{n}",
            "ident": f"{n:032x}",
            "amount": f"{n % 10000}.{n % 100:02d}",
        }
    ).encode()
