"""WebSocket close codes (RFC 6455 §7.4) as p3log uses them, and the rules of a close frame.

Every module that closes a link takes its code from here. Sans-IO (no trio), so the
replay plans use it too.

One fallback, `passed_on`: a close that p3log observed and passes on (the tap to the
other end, a replay repeating a recorded close) keeps its code when that code may be
sent in a close frame, and otherwise becomes `INTERNAL_ERROR` (1011). That covers a
link that broke without a code (`None`: a reset, a vanished peer), the codes that only
describe what happened locally (1005 no status, 1006 abnormal closure, 1015 TLS
failure) and anything outside the registered ranges: the other side learns that the
link ended abnormally, never that it ended normally.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "GOING_AWAY",
    "INTERNAL_ERROR",
    "MAX_REASON_BYTES",
    "MESSAGE_TOO_BIG",
    "NORMAL_CLOSURE",
    "POLICY_VIOLATION",
    "TRY_AGAIN_LATER",
    "clip",
    "passed_on",
    "sendable",
]

NORMAL_CLOSURE: Final = 1000
GOING_AWAY: Final = 1001  # the tap shuts down; a replay was stopped
POLICY_VIOLATION: Final = 1008  # a replayed POS left the script
MESSAGE_TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011  # the one fallback (see `passed_on`)
TRY_AGAIN_LATER: Final = 1013  # a replay is already running

#: A close frame's payload is at most 125 bytes, two of them the code.
MAX_REASON_BYTES: Final = 123

# The codes an endpoint may put in a close frame (RFC 6455 §7.4.1-2): the defined
# ones except 1004 (reserved) and 1005, 1006, 1015 (never on the wire), the rest of
# 1000-2999 as registered since (1012-1014), and 3000-4999 for libraries and apps.
_SENDABLE: Final = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))
_ELLIPSIS: Final = "..."


def sendable(code: int | None) -> bool:
    """Whether `code` may be sent in a close frame."""
    return code is not None and (code in _SENDABLE or 3000 <= code < 5000)


def passed_on(code: int | None) -> int:
    """The code to send for a close we observed: itself if sendable, else 1011."""
    return code if code is not None and sendable(code) else INTERNAL_ERROR


def clip(reason: str) -> str:
    """`reason`, cut to fit a close frame: at most 123 UTF-8 bytes, cut at a character
    boundary and marked with "..." when cut."""
    data = reason.encode("utf-8", errors="replace")
    if len(data) <= MAX_REASON_BYTES:
        return data.decode("utf-8")
    kept = data[: MAX_REASON_BYTES - len(_ELLIPSIS)].decode("utf-8", errors="ignore")
    return kept + _ELLIPSIS
