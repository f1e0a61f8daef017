"""The protocol rules a peer can break (docs/protocol.md §7), by the one name each goes by.

The fold writes them into `protocol_findings.rule`; the client puts them into
`Violation.rule`. `FINDINGS` are the ones the fold can find in a recording; the
client, which sees every message before it is stored, also names `no_tag` and
`unexpected_type` (the fold reads those as `unknown_tag` and as an answer).
"""

from __future__ import annotations

from enum import StrEnum


class Rule(StrEnum):
    ABORT_NOT_ABORTABLE = "abort_not_abortable"
    EXECUTE_WHILE_BUSY = "execute_while_busy"
    UNKNOWN_TAG = "unknown_tag"
    DUPLICATE_RESPONSE = "duplicate_response"
    MESSAGE_AFTER_RESPONSE = "message_after_response"
    MISSING_RESPONSE = "missing_response"
    TAG_REUSED = "tag_reused"
    SIGNATURE_WITHOUT_ACTION = "signature_without_action"
    MALFORMED_MESSAGE = "malformed_message"
    NO_TAG = "no_tag"
    UNEXPECTED_TYPE = "unexpected_type"


FINDINGS: tuple[Rule, ...] = (
    Rule.ABORT_NOT_ABORTABLE,
    Rule.EXECUTE_WHILE_BUSY,
    Rule.UNKNOWN_TAG,
    Rule.DUPLICATE_RESPONSE,
    Rule.MESSAGE_AFTER_RESPONSE,
    Rule.MISSING_RESPONSE,
    Rule.TAG_REUSED,
    Rule.SIGNATURE_WITHOUT_ACTION,
    Rule.MALFORMED_MESSAGE,
)
