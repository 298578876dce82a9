"""Secrets at rest: Fernet with a key derived from ``SECRET_KEY`` (as n8n and Airflow do).

Encrypted values are strings prefixed ``enc:v1:`` so a settings blob can hold plain and
encrypted values side by side and we can tell which is which.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

PREFIX = "enc:v1:"


class SecretUnreadable(Exception):
    """The value was encrypted with another SECRET_KEY (or is damaged). The message never
    carries the value or its ciphertext."""


def _fernet(secret_key: str | None = None) -> Fernet:
    return _fernet_for(secret_key or current_app.config["SECRET_KEY"])


@lru_cache(maxsize=8)
def _fernet_for(secret_key: str) -> Fernet:
    """The Fernet for one SECRET_KEY, derived once per process: HKDF plus Fernet set-up cost
    more than the decryption itself, and every registration and delivery reads settings.
    Keyed on the secret key, so an app with another key (tests, rotation) gets its own."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"crm-bridge", info=b"settings-encryption").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def encrypt(value: str, secret_key: str | None = None) -> str:
    if is_encrypted(value):
        return value
    return PREFIX + _fernet(secret_key).encrypt(value.encode()).decode()


def decrypt(value: str, secret_key: str | None = None) -> str:
    if not is_encrypted(value):
        return value
    try:
        return _fernet(secret_key).decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "a stored secret cannot be decrypted with this SECRET_KEY: it was encrypted with another one "
            "(restore that key) or is damaged"
        ) from exc


def mask(value: str | None) -> str:
    """What a secret looks like once saved: never the value, at most its last 4 characters."""
    if not value:
        return ""
    plain = value if not is_encrypted(value) else "****"
    return "••••" + plain[-4:] if len(plain) >= 12 else "••••"


# -- tokens and keys --------------------------------------------------------------------------


def new_token(prefix: str = "") -> str:
    """A random URL-safe token (256 bits)."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy token. Looking rows up by this hash leaks nothing useful
    through timing (an attacker would need a preimage); we still compare in constant time."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; False when either side is missing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
