"""Webhook signing secrets: generation, encryption at rest, and the Standard Webhooks signature.

A signing secret has to be used in clear to sign every delivery, so unlike API keys it cannot be stored
as a hash. It is stored encrypted with AES-GCM under a key derived from ``FLAGYARD_WEBHOOK_SECRET_KEY``
(production mode refuses the development default and weak values), and shown once: in the response that
creates or rotates it. :class:`SigningSecret` keeps it out of reprs and logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flagyard.control_plane.exceptions import ConfigurationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format, not a secret
SECRET_BYTES = 32
DISPLAY_CHARS = 10
"""Characters of a secret shown as its display prefix (``whsec_`` and 4 of the secret's own)."""
_AAD = b"flagyard webhook signing secret v1"
_NONCE_BYTES = 12


class SigningSecret:
    """A subscription's secret in clear: usable to sign, never shown by ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value.startswith(SECRET_PREFIX):
            raise ValueError("a webhook secret starts with whsec_")
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def prefix(self) -> str:
        return self._value[:DISPLAY_CHARS]

    def key(self) -> bytes:
        return base64.b64decode(self._value.removeprefix(SECRET_PREFIX))

    def __repr__(self) -> str:
        return "SigningSecret('**********')"

    __str__ = __repr__


def new_secret() -> SigningSecret:
    return SigningSecret(SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode())


class SecretBox:
    """Encrypts and decrypts signing secrets with AES-256-GCM (a fresh random nonce each time)."""

    def __init__(self, master_key: str) -> None:
        self._aead = AESGCM(hashlib.sha256(master_key.encode()).digest())

    def seal(self, secret: SigningSecret) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.reveal().encode(), _AAD)

    def open(self, sealed: bytes) -> SigningSecret:
        try:
            clear = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _AAD)
        except InvalidTag:
            raise ConfigurationError(
                "a webhook secret cannot be decrypted: FLAGYARD_WEBHOOK_SECRET_KEY is not the key it was "
                "stored with (rotate the subscription's secret)"
            ) from None
        return SigningSecret(clear.decode())


def sign(secret: SigningSecret, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of Standard Webhooks: ``v1,<base64 HMAC-SHA256>`` of
    ``{id}.{timestamp}.{body}``; the receiver checks it and refuses timestamps far from its clock."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.key(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
