"""Standard Webhooks signing (https://www.standardwebhooks.com/): shared so any adapter that
signs or verifies this scheme uses one implementation. Secrets are ``whsec_<base64>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any


def signing_secrets(config: Mapping[str, Any]) -> list[str]:
    """Current secret(s) first, then ``previous_signing_secret``: each is signed with."""
    found: list[str] = []
    for name in ("signing_secret", "previous_signing_secret"):
        value = config.get(name)
        items = value if isinstance(value, list) else str(value or "").replace(",", " ").split()
        found += [str(item).strip() for item in items if str(item).strip()]
    return found


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def standard_webhook_signature(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` per secret, space-separated
    (https://www.standardwebhooks.com/, "Signature scheme")."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode() for s in secrets
    )
