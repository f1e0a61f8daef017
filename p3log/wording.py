"""How p3log writes instants and counts for people: the terminal, the report, the CLI.

One home, so that `p3log show`, the HTML report and a command's summary line agree on
`2026-11-27 14:30:00.123456` (always UTC) and on `1 finding` / `2 findings`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["EPOCH", "counted", "from_micros", "instant_text", "iso_text", "plural"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""Instants in the store are UTC microseconds since this."""


def from_micros(micros: int) -> datetime:
    """UTC microseconds since `EPOCH` as an aware datetime."""
    return EPOCH + timedelta(microseconds=micros)


def instant_text(value: datetime | int | None, places: int = 6, *, zone: bool = False) -> str:
    """An instant (a datetime or UTC microseconds) as `YYYY-MM-DD HH:MM:SS.ffffff` in
    UTC, with `places` digits of the second's fraction (0: none) and, with `zone`, a
    trailing ` UTC`; '' for None."""
    if value is None:
        return ""
    at = value if isinstance(value, datetime) else from_micros(value)
    text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[: 20 + places].rstrip(".")
    return f"{text} UTC" if zone else text


def iso_text(micros: int | None) -> str | None:
    """UTC microseconds as ISO 8601 (`2026-11-27T14:30:00.123456+00:00`), for JSON."""
    return None if micros is None else from_micros(micros).isoformat()


def plural(count: int, noun: str) -> str:
    """`noun` for one, `nouns` for any other count (p3log's nouns are all regular)."""
    return noun if count == 1 else f"{noun}s"


def counted(count: int, noun: str) -> str:
    """`1 finding`, `2 findings`."""
    return f"{count} {plural(count, noun)}"
