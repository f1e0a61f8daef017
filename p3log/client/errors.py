"""What the P3 client raises: one base class, a few kinds, nothing stringly typed.

```
P3ClientError
 ├── P3ErrorResponse          the server answered with an error status
 │    ├── AuthenticationFailed    SERVER_AUTHENTICATION_FAILED
 │    ├── DeviceBusy              ACCESSORY_BUSY, TRANSACTION_BUSY
 │    ├── InvalidParameter        PARAMETER_MISSING, PARAMETER_INVALID
 │    ├── NotAbortable            the dialect's "no longer abortable" error
 │    └── UnknownReference        TRANSACTION_REFERENCE_NOT_FOUND (amend)
 ├── RequestRefused           the client would not send a request the protocol forbids now
 ├── ConnectFailed            the link could not be opened
 ├── ConnectionLost           the link ended while something was waiting on it
 ├── ProtocolViolation        the server sent something that does not fit the protocol
 └── RequestTimeout           a deadline passed (also a `trio.TooSlowError`)
```

Every `P3ErrorResponse` carries the whole server `message`, its `error` object and,
when the response had one, the `transaction` it reached; `error_type` is the key to
branch on for error types that have no class of their own.
"""

from __future__ import annotations

import trio

from p3log.protocol.dialect import Dialect
from p3log.protocol.model import (
    AmendTransactionResponse,
    ExecuteTransactionResponse,
    Message,
    P3Error,
    Transaction,
)

__all__ = [
    "AuthenticationFailed",
    "ConnectFailed",
    "ConnectionLost",
    "DeviceBusy",
    "InvalidParameter",
    "NotAbortable",
    "P3ClientError",
    "P3ErrorResponse",
    "ProtocolViolation",
    "RequestRefused",
    "RequestTimeout",
    "UnknownReference",
    "error_for_response",
]


class P3ClientError(Exception):
    """Base of everything the P3 client raises on purpose."""


class P3ErrorResponse(P3ClientError):
    """The server answered a request with an error status."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.error: P3Error | None = message.error
        self.status = message.status
        body = message.body
        self.transaction: Transaction | None = (
            body.transaction
            if isinstance(body, ExecuteTransactionResponse | AmendTransactionResponse)
            else None
        )
        error = self.error or P3Error()
        text = f"{message.type} {message.status}: {error.type or 'no error type'}"
        if error.source:
            text += f" ({error.source})"
        if error.message:
            text += f": {error.message}"
        super().__init__(text)

    @property
    def error_type(self) -> str | None:
        return self.error.type if self.error else None

    @property
    def error_source(self) -> str | None:
        return self.error.source if self.error else None

    @property
    def error_message(self) -> str | None:
        return self.error.message if self.error else None


class AuthenticationFailed(P3ErrorResponse):
    """The login was refused (SERVER_AUTHENTICATION_FAILED)."""


class DeviceBusy(P3ErrorResponse):
    """The reader or the transaction slot is taken (ACCESSORY_BUSY, TRANSACTION_BUSY)."""


class InvalidParameter(P3ErrorResponse):
    """A request parameter was missing or invalid (PARAMETER_MISSING, PARAMETER_INVALID)."""


class NotAbortable(P3ErrorResponse):
    """The server refused an abort: the transaction is past the point of no return."""


class UnknownReference(P3ErrorResponse):
    """An amend referenced a transaction the server does not know."""


class RequestRefused(P3ClientError):
    """The client refused to send a request the protocol does not allow at this point.

    For example an abort while the latest update said `abortable: false` and no
    action was open, or a signature with no signature action open (docs/protocol.md §7).
    Nothing was sent; the methods that refuse take `force=True` to send anyway.
    """


class ConnectFailed(P3ClientError):
    """The link to the PayServer could not be opened."""


class ConnectionLost(P3ClientError):
    """The link ended (or broke) while a request or operation was still waiting."""


class ProtocolViolation(P3ClientError):
    """The server sent something that does not fit the protocol (see `Violation`)."""


class RequestTimeout(P3ClientError, trio.TooSlowError):
    """A response did not arrive in time; the client is still usable afterwards."""


_ERROR_CLASSES: dict[str, type[P3ErrorResponse]] = {
    "SERVER_AUTHENTICATION_FAILED": AuthenticationFailed,
    "ACCESSORY_BUSY": DeviceBusy,
    "TRANSACTION_BUSY": DeviceBusy,
    "PARAMETER_MISSING": InvalidParameter,
    "PARAMETER_INVALID": InvalidParameter,
    "TRANSACTION_REFERENCE_NOT_FOUND": UnknownReference,
}


def error_for_response(message: Message, dialect: Dialect) -> P3ErrorResponse:
    """The typed exception for a server message with an error status."""
    error_type = message.error.type if message.error else None
    if error_type is None:
        return P3ErrorResponse(message)
    if error_type == dialect.abort.not_abortable_error:
        return NotAbortable(message)
    return _ERROR_CLASSES.get(error_type, P3ErrorResponse)(message)
