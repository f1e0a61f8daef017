"""Redaction of what the tap records about a connection: handshake headers, subprotocols,
and credentials in URLs and paths (a lifecycle event's details, before they are JSON).

Rules (counted as ``handshake_credential`` in policy ``p3log-redact/2``; a merchant secret
found here also as ``merchant_secret``):

- a header, or a query parameter of any URL or path in the details, whose name (percent-
  decoded, lower-cased, without punctuation) names a credential: it contains one of
  `CREDENTIAL_WORDS` (so ``Authorization``, ``Cookie``, ``X-Auth-Token``, ``X-Api-Key``,
  ``access_token``). Its value becomes ``[REDACTED credential hmac-sha256:<32 hex>]``; when
  the name contains ``merchantsecret`` the value becomes the merchant-secret marker, and the
  door remembers it for the rest of the session;
- every subprotocol value (``subprotocols``, ``subprotocol``, the ``Sec-WebSocket-Protocol``
  header): clients carry tokens there, and no P3 subprotocol is defined, so each becomes
  ``[REDACTED subprotocol hmac-sha256:<32 hex>]`` (equal values stay comparable);
- the password of a URL's user info (``ws://user:password@host``);
- a query parameter (or one after ``#``, in a fragment) whose value, percent-decoded,
  holds a merchant secret of the session (``?merchantSecret=s3cr%65t&id=s3cr%65t``):
  the literal search of the door cannot see it, so the value is replaced here
  (``secret_reuse``). A marker look-alike followed by more text is no marker: the whole
  value is fingerprinted.

The WebSocket nonce (``Sec-WebSocket-Key``) is kept when it has a nonce's form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote_plus

from p3log.store.redact import (
    HANDSHAKE_RULE,
    MERCHANT_SECRET_RULE,
    MIN_SUBSTRING_SECRET,
    SECRET_REUSE_RULE,
    Redactor,
    is_marker,
)

CREDENTIAL_WORDS: Final = (
    "secret",
    "token",
    "auth",
    "key",
    "passw",
    "cookie",
    "session",
    "signature",
    "credential",
)
_MERCHANT_SECRET: Final = "merchantsecret"
_SUBPROTOCOL_FIELDS: Final = frozenset({"subprotocols", "subprotocol"})
_SUBPROTOCOL_HEADER: Final = "secwebsocketprotocol"
# The handshake's nonce (RFC 6455), public by design, is kept when it has its form.
_NONCE_HEADER: Final = "secwebsocketkey"
_NONCE: Final = re.compile(r"[A-Za-z0-9+/]{22}==\Z")
# A parameter of a query or of a fragment (`#merchantSecret=…`, which a client may send
# in its request target); a value may start with a marker (a redacted one has spaces).
_QUERY_PARAMETER: Final = re.compile(
    r"(?<=[?&;#])([^=&;#\s]+)=((?:\[REDACTED [A-Za-z]+ hmac-sha256:[0-9a-f]{32}\])?[^&;#\s]*)"
)
_USER_INFO: Final = re.compile(r"(?<=//)([^/@\s:]*):([^/@\s]+)@")


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", unquote_plus(name).lower())


def credential_kind(name: str) -> str | None:
    """``merchantSecret``, ``credential``, or None: what a header or parameter name holds."""
    normalised = _normalised(name)
    if _MERCHANT_SECRET in normalised:
        return "merchantSecret"
    if any(word in normalised for word in CREDENTIAL_WORDS):
        return "credential"
    return None


class HandshakeRedaction:
    """One lifecycle event's details, redacted; `rules` and `secrets` say what was found."""

    def __init__(
        self, redactor: Redactor, details: Mapping[str, Any], known: tuple[str, ...] = ()
    ) -> None:
        self._redactor = redactor
        self.rules: set[str] = set()
        self.secrets: list[str] = []
        self._known = [secret for secret in known if secret and not is_marker(secret)]
        self.details = self._mapping(details)
        new = [secret for secret in dict.fromkeys(self.secrets) if secret not in self._known]
        if new:  # a secret found here may stand earlier in the details, encoded
            self._known += new
            self.secrets = []
            self.details = self._mapping(details)

    def _mapping(self, details: Mapping[str, Any]) -> dict[str, Any]:
        return {key: self._field(str(key), value) for key, value in details.items()}

    def _field(self, key: str, value: Any) -> Any:
        if key in _SUBPROTOCOL_FIELDS:
            return self._subprotocols(value)
        if key == "headers":
            return self._headers(value)
        return self._value(value)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, Mapping):
            return self._mapping(value)
        if isinstance(value, list | tuple):
            return [self._value(item) for item in value]
        return value

    def _headers(self, headers: Any) -> Any:
        if isinstance(headers, Mapping):
            return {name: self._header(str(name), value) for name, value in headers.items()}
        if isinstance(headers, list | tuple):
            return [
                [item[0], *(self._header(item[0], value) for value in item[1:])]
                if isinstance(item, list | tuple) and len(item) >= 2 and isinstance(item[0], str)
                else self._value(item)
                for item in headers
            ]
        return self._value(headers)

    def _header(self, name: str, value: Any) -> Any:
        if _normalised(name) == _SUBPROTOCOL_HEADER:
            return self._subprotocols(value)
        if _normalised(name) == _NONCE_HEADER and isinstance(value, str) and _NONCE.match(value):
            return value
        kind = credential_kind(name)
        if kind is not None and isinstance(value, list | tuple):  # one header, several values
            return [self._header(name, item) for item in value]
        if kind is None or not isinstance(value, str):
            return self._value(value)
        return self._credential(kind, value)

    def _subprotocols(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._credential("subprotocol", value)
        if isinstance(value, list | tuple):
            return [self._subprotocols(item) for item in value]
        return self._value(value)

    def _credential(self, kind: str, value: str) -> str:
        if is_marker(value):
            return value
        self.rules.add(HANDSHAKE_RULE)
        if kind == "merchantSecret":
            self.rules.add(MERCHANT_SECRET_RULE)
            self.secrets.append(value)
        return self._redactor.marker(value, kind)

    def _text(self, text: str) -> str:
        if "=" in text:
            text = _QUERY_PARAMETER.sub(self._parameter, text)
        if "@" in text:
            text = _USER_INFO.sub(self._user_info, text)
        return text

    def _parameter(self, match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        kind = credential_kind(name)
        if kind is None and value and self._known:
            return f"{name}={self._reused(value)}"
        if kind is None or not value:
            return match.group()
        return f"{name}={self._credential(kind, unquote_plus(value))}"

    def _reused(self, value: str) -> str:
        """`value`, or a marker if percent-decoded it holds a secret of the session."""
        decoded = unquote_plus(value)
        for secret in self._known:
            if decoded == secret or (len(secret) >= MIN_SUBSTRING_SECRET and secret in decoded):
                self.rules.add(SECRET_REUSE_RULE)
                kind = "merchantSecret" if decoded == secret else "credential"
                return self._redactor.marker(decoded, kind)
        return value

    def _user_info(self, match: re.Match[str]) -> str:
        return f"{match.group(1)}:{self._credential('credential', unquote_plus(match.group(2)))}@"
