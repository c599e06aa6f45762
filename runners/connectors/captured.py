"""Passwords the routing proxy captured, sealed with AES-256-GCM under the plan's capture key.

The proxy seals a password only after a backend accepted it (``runners.proxy.capture``); the store
keeps the ciphertext, the nonce and the key's id (``runners.state.captured``), never the password. The
associated data binds each ciphertext to its user, backend and login: a row copied onto another user
does not open. Rotation: ``previous_keys`` still open what they sealed, ``rekey`` seals it anew under
the current key. The engine's credential lookup (``runners.connectors.credentials``) opens the one of a
mailbox whose plan row says ``captured:``; no password is kept after its expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runners.errors import MigrationError, SecretError
from runners.plan.proxy_capture_options import CapturedSecret, CaptureSettings
from runners.plan.secret import Secret
from runners.safe_text import register_secret
from runners.state.open_store import open_store_at
from runners.state.proxy_rows import SealedCredential
from runners.state.store import StateStore

_KEY_BYTES = 32
_NONCE_BYTES = 12
_DAY = 86400.0


class NotCaptured(MigrationError):
    """No password was captured for this user (or it expired): this mailbox can't log in, the others can."""


@dataclass(frozen=True, slots=True)
class _Key:
    id: str
    aead: AESGCM


class Keyring:
    """The current capture key (sealing) and every key that may still open (current and previous)."""

    def __init__(self, settings: CaptureSettings) -> None:
        keys = [_key(s) for s in ((settings.key,) if settings.key else ()) + settings.previous_keys]
        if not keys:
            raise SecretError("[proxy.capture] has no key")
        self.current: _Key | None = keys[0] if settings.key is not None else None
        self._by_id = {k.id: k for k in reversed(keys)}
        self.expiry_seconds = settings.expiry_days * _DAY

    def seal(
        self, user: str, backend: str, login: str, password: str, now: float | None = None
    ) -> SealedCredential:
        if self.current is None:
            raise SecretError("[proxy.capture] has no current key to seal with")
        now = time.time() if now is None else now
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self.current.aead.encrypt(nonce, password.encode("utf-8"), _bound(user, backend, login))
        return SealedCredential(
            user, backend, login, self.current.id, nonce, ciphertext, now, now + self.expiry_seconds
        )

    def open(self, sealed: SealedCredential) -> str:
        """The password (registered with ``safe_text`` so that no text can carry it out)."""
        key = self._by_id.get(sealed.key_id)
        if key is None:
            raise SecretError(
                f"the password captured for {sealed.user} was sealed with key {sealed.key_id}, which is neither "
                "[proxy.capture] key nor one of its previous_keys"
            )
        try:
            plain = key.aead.decrypt(
                sealed.nonce, sealed.ciphertext, _bound(sealed.user, sealed.backend, sealed.login)
            )
        except InvalidTag:
            raise SecretError(
                f"the password captured for {sealed.user} does not open: altered, or not this user's"
            ) from None
        password = plain.decode("utf-8")
        register_secret(password)
        return password

    def reseal(self, sealed: SealedCredential) -> SealedCredential | None:
        """``sealed`` under the current key, keeping its capture time and expiry; None if it is already."""
        if self.current is None or sealed.key_id == self.current.id:
            return None
        fresh = self.seal(sealed.user, sealed.backend, sealed.login, self.open(sealed), sealed.captured)
        return SealedCredential(
            fresh.user,
            fresh.backend,
            fresh.login,
            fresh.key_id,
            fresh.nonce,
            fresh.ciphertext,
            sealed.captured,
            sealed.expires,
        )


@dataclass(frozen=True, slots=True)
class Rekeyed:
    resealed: int
    current: int  # already under the current key
    expired: int  # dropped


def rekey(store: StateStore, keyring: Keyring) -> Rekeyed:
    """Seal every kept password under the current key (after a rotation), dropping expired ones."""
    expired = store.drop_expired_credentials()
    resealed = current = 0
    for sealed in store.captured_credentials():
        fresh = keyring.reseal(sealed)
        if fresh is None:
            current += 1
        elif store.reseal_credential(sealed, fresh):
            resealed += 1
    return Rekeyed(resealed, current, expired)


def captured_password(secret: CapturedSecret, user: str) -> str:
    """The password the proxy captured for ``user`` on the secret's backend, opened with the plan's keys."""
    store = open_store_at(secret.state_db, secret.state_server, read_only=True)
    try:
        sealed = store.captured_credential(user, secret.backend)
    finally:
        store.close()
    if sealed is None:
        raise NotCaptured(
            f"{user}: no password captured by the proxy for the {secret.backend} platform (the user has not "
            f"logged in through it since capture was turned on, or the password expired after "
            f"{secret.capture.expiry_days:g} days or was forgotten)"
        )
    return Keyring(secret.capture).open(sealed)


def key_id(material: bytes) -> str:
    """A key's public name: a hash of it, so rows say which key sealed them without holding it."""
    return hashlib.sha256(b"cutover capture key\0" + material).hexdigest()[:16]


def _key(secret: Secret) -> _Key:
    material = _material(secret.reveal().strip(), secret.described)
    return _Key(key_id(material), AESGCM(material))


def _material(text: str, described: str) -> bytes:
    """32 bytes written as 64 hex digits or as base64 (``openssl rand -base64 32``)."""
    if len(text) == 2 * _KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _KEY_BYTES:
        raise SecretError(
            f"the capture key {described} is not 32 bytes in base64 or hex (make one with `openssl rand -base64 32`)"
        )
    return raw


def _bound(user: str, backend: str, login: str) -> bytes:
    """The associated data: whose password this is. Not secret, but it must match to open."""
    return "\0".join(("cutover-capture-v1", user, backend, login)).encode("utf-8")
