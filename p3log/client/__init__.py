"""The P3 client library: what a Python POS uses to talk to a PayServer (docs/client.md)."""

from p3log.client.client import P3Client, TransactionEvent, TransactionHandle, Violation
from p3log.client.errors import (
    AuthenticationFailed,
    ConnectFailed,
    ConnectionLost,
    DeviceBusy,
    InvalidParameter,
    NotAbortable,
    P3ClientError,
    P3ErrorResponse,
    ProtocolViolation,
    RequestRefused,
    RequestTimeout,
    UnknownReference,
)

__all__ = [
    "AuthenticationFailed",
    "ConnectFailed",
    "ConnectionLost",
    "DeviceBusy",
    "InvalidParameter",
    "NotAbortable",
    "P3Client",
    "P3ClientError",
    "P3ErrorResponse",
    "ProtocolViolation",
    "RequestRefused",
    "RequestTimeout",
    "TransactionEvent",
    "TransactionHandle",
    "UnknownReference",
    "Violation",
]
