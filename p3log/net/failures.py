"""Why a connection could not be had, in words a user can act on.

trio-websocket wraps a failed dial in a bare `HandshakeError` (its text is empty, the
cause is the `OSError`); this names what happened instead: refused, timed out, a name
that does not resolve, a TLS failure, or a server that rejected the handshake with
HTTP status N. The tap (upstream failures), the POS client and `replay drive` use it.
"""

from __future__ import annotations

import errno
import socket
import ssl

import trio
import trio_websocket

__all__ = ["describe_connect_failure"]

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
}


def describe_connect_failure(exc: BaseException) -> str:
    """One short phrase for why dialing (and, for ws://, the handshake) failed."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return describe_connect_failure(exc.exceptions[0])
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"rejected with HTTP status {exc.status_code}"
    if isinstance(exc, trio.TooSlowError | trio_websocket.ConnectionTimeout):
        return "timed out" + (f" ({exc})" if str(exc) else "")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate not trusted ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc.strerror or type(exc).__name__}"
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror})" if exc.strerror else "host not found"
    if isinstance(exc, OSError):
        if exc.errno is None and exc.__cause__ is not None:
            # trio's "all attempts to connect to HOST:PORT failed": the cause says why
            return describe_connect_failure(exc.__cause__)
        if exc.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[exc.errno]
        if exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, trio_websocket.HandshakeError) and cause is not None:
        return describe_connect_failure(cause)
    return str(exc) or type(exc).__name__
