"""Recorded text as a terminal may show it: every character visible, none obeyed.

Recorded values come from peers and copied stores. Printed raw, an ESC sequence,
`\\r`, BEL or an OSC 8 hyperlink rewrites the screen, a bidi override reorders what
the reader sees; printed through Rich's `print`, `[link=…]` and `:x:` are markup and
emoji codes. So p3log never prints recorded text as a string Rich parses (tables
and timelines are built of `rich.text.Text`, the consoles have markup, emoji and
highlighting off), and shows every character Python does not call printable
(Unicode's Other and Separator categories, but the space: controls, format
characters such as bidi overrides, line separators, surrogates, unassigned code
points) as its escape, `\\x1b`, `\\u202e`, `\\U000e0001`. A backslash is shown as
itself, so a recorded `\\x1b` (four characters) looks the same as an escaped ESC:
CSV and JSON output keep the exact data.
"""

from __future__ import annotations

import logging


def visible(text: str, keep: str = "") -> str:
    """`text` with every non-printable character but those in `keep` (the HTML
    report keeps newlines and tabs in its preformatted payloads) shown as its escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char in keep else _escape(char) for char in text)


def _escape(char: str) -> str:
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


class VisibleFormatter(logging.Formatter):
    """Log lines with recorded text (a peer's bytes in an error) made visible."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))
