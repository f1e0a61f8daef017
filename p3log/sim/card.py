"""The simulated shopper's card: drawn from the transaction's seeded RNG, masked.

No full card number exists anywhere in the simulator: a card is only its scheme,
how it was read, its last four digits (behind asterisks) and its expiry.
"""

from __future__ import annotations

from random import Random

import attrs

from p3log.protocol.model import CardDetails, PaymentDetails

__all__ = ["SCHEMES", "Card", "draw_card"]

SCHEMES = ("VISA", "MASTERCARD", "MAESTRO", "AMERICAN_EXPRESS")
_DIGITS = {"AMERICAN_EXPRESS": 15}


@attrs.frozen
class Card:
    scheme: str
    source: str  # ICC (inserted, chip and PIN) or NFC_ICC (contactless)
    masked_number: str  # e.g. ************1111
    expiry_month: int
    expiry_year: int

    def payment_details(self, verification: str) -> PaymentDetails:
        return PaymentDetails(
            scheme=self.scheme,
            source=self.source,
            customer_verification=verification,
            masked_account_number=self.masked_number,
        )

    def card_details(self) -> CardDetails:
        return CardDetails(
            expiry_month=self.expiry_month,
            expiry_year=self.expiry_year,
            masked_card_number=self.masked_number,
        )


def draw_card(rng: Random, scheme: str | None, chip: bool) -> Card:
    """A card; `scheme` None lets the RNG pick one. Always draws the same number of values."""
    drawn_scheme = rng.choice(SCHEMES)
    last4 = rng.randrange(10_000)
    month = rng.randint(1, 12)
    year = 2028 + rng.randrange(6)
    scheme = scheme or drawn_scheme
    hidden = _DIGITS.get(scheme, 16) - 4
    return Card(
        scheme=scheme,
        source="ICC" if chip else "NFC_ICC",
        masked_number="*" * hidden + f"{last4:04d}",
        expiry_month=month,
        expiry_year=year,
    )
