"""Tokens and secrets: generated here, stored hashed (tokens) or encrypted (webhook secrets)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken

API_TOKEN_PREFIX = "ucmha_"
ALERT_TOKEN_PREFIX = "ucmalert_"
WEBHOOK_SECRET_PREFIX = "whsec_"


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_alert_token() -> str:
    return ALERT_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast unsalted hash is enough to make a leaked table useless.
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


class SecretBox:
    """Symmetric encryption at rest for secrets the service must be able to read back."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with the configured UCMHA_ENCRYPTION_KEY") from exc


WEBHOOK_SECRET_PREFIX = "whsec_"


def webhook_signature_valid(secret: str, msg_id: str, timestamp: str, signatures: str, body: bytes,
                            now_s: float, tolerance_s: float) -> bool:
    """Standard Webhooks signature check over the raw body bytes, before anything decodes them.

    Signed content is `{webhook-id}.{webhook-timestamp}.` followed by the body exactly as sent;
    `signatures` is a space-separated list of `v1,<base64 HMAC-SHA256>`; the timestamp (Unix
    seconds) must be within `tolerance_s` of now. Every comparison is constant-time.
    """
    if not msg_id or not timestamp.isdecimal() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX) + "==")
    except ValueError:
        return False
    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    matched = False
    for candidate in signatures.split(" "):
        version, _, encoded = candidate.partition(",")
        try:
            given = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        matched |= version == "v1" and hmac.compare_digest(expected, given)
    return matched
