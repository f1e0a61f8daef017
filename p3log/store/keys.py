"""The fingerprint key: the HMAC key behind `[REDACTED merchantSecret hmac-sha256:…]`.

Whoever holds the key can test guesses of a merchant secret against a marker, so the
key never lives in the store: a store, or an export of it, can be handed to an
auditor. The store records only the key's id (`store.json`), a public and
non-reversible name for it; a writer finds the key by that id in the key directory,
or reads the key file the operator names.

    P3LOG_REDACTION_KEY_FILE   a key file to use (`--redaction-key` on writing commands);
                               created, with a new key, when it is missing and a new
                               store is being made
    P3LOG_KEY_DIR              where keys are kept by id, `<id>.key`; by default
                               $XDG_CONFIG_HOME/p3log/keys (~/.config/p3log/keys)

Readers (sql, verify, export, report, `open_store`) never need the key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from pathlib import Path

import attrs

from p3log.store.errors import StoreError

KEY_FILE_ENV = "P3LOG_REDACTION_KEY_FILE"
KEY_DIR_ENV = "P3LOG_KEY_DIR"
KEY_BYTES = 32
KEY_SUFFIX = ".key"
MAX_KEY_BYTES = 4096  # a key file is a key, not a file that happens to be named
KEY_ID = re.compile(r"[a-z2-7]{24}\Z")
# Its own domain, so that a key id is never also the fingerprint of some secret.
_KEY_ID_DOMAIN = b"p3log fingerprint key id/1\x00"


class FingerprintKeyError(StoreError):
    """A fingerprint key that is missing, unreadable, or not the store's."""


@attrs.frozen
class FingerprintKey:
    secret: bytes = attrs.field(repr=False)

    @property
    def id(self) -> str:
        """24 characters of base32 (a-z, 2-7): public, and it says nothing of the key.
        Lowercase letters and few digits, so no redaction rule ever matches it."""
        digest = hashlib.sha256(_KEY_ID_DOMAIN + self.secret).digest()[:15]
        return base64.b32encode(digest).decode().lower()

    @classmethod
    def generate(cls) -> FingerprintKey:
        return cls(secrets.token_bytes(KEY_BYTES))


def key_directory() -> Path:
    if named := os.environ.get(KEY_DIR_ENV):
        return Path(named)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "p3log" / "keys"


def named_key_file() -> Path | None:
    named = os.environ.get(KEY_FILE_ENV)
    return Path(named) if named else None


def key_for_new_store() -> tuple[FingerprintKey, Path]:
    """The key a new store records with, and where it is kept: the named key file
    (made if missing), or a new key kept in the key directory."""
    named = named_key_file()
    if named is not None and named.exists():
        return read_key_file(named), named
    key = FingerprintKey.generate()
    return key, keep_key(key, named)


def key_for_store(key_id: str) -> tuple[FingerprintKey, Path]:
    """The key whose id the store records; refuses any other."""
    if not KEY_ID.match(key_id):
        raise FingerprintKeyError(f"{key_id!r} in store.json is not a fingerprint key id")
    named = named_key_file()
    path = named if named is not None else key_directory() / f"{key_id}{KEY_SUFFIX}"
    if not path.exists():
        raise FingerprintKeyError(
            f"the store's fingerprint key (id {key_id}) is not at {path}; name its file "
            f"with --redaction-key or {KEY_FILE_ENV}"
        )
    key = read_key_file(path)
    if key.id != key_id:
        raise FingerprintKeyError(
            f"{path} holds fingerprint key {key.id}, but the store records with key {key_id}; "
            "refusing to mix fingerprints of two keys in one store"
        )
    return key, path


def read_key_file(path: Path) -> FingerprintKey:
    try:
        if not path.is_file():
            raise FingerprintKeyError(f"{path} is not a fingerprint key (not a regular file)")
        with path.open("rb") as key_file:
            secret = key_file.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise FingerprintKeyError(f"cannot read fingerprint key {path}: {exc.strerror}") from exc
    if not KEY_BYTES <= len(secret) <= MAX_KEY_BYTES:
        raise FingerprintKeyError(
            f"{path} is not a fingerprint key ({len(secret)} bytes; {KEY_BYTES} to {MAX_KEY_BYTES})"
        )
    return FingerprintKey(secret)


def keep_key(key: FingerprintKey, path: Path | None = None) -> Path:
    """Write `key` to `path` (by default `<key directory>/<id>.key`), readable by its
    owner only, durably and whole: a file there is always a complete key."""
    path = path if path is not None else key_directory() / f"{key.id}{KEY_SUFFIX}"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key already there
        except FileExistsError:
            if read_key_file(path) != key:
                raise FingerprintKeyError(f"{path} already holds another fingerprint key") from None
        finally:
            tmp.unlink()
        _fsync_dir(path.parent)
    except OSError as exc:
        raise FingerprintKeyError(
            f"cannot keep the fingerprint key at {path}: {exc.strerror}"
        ) from exc
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
