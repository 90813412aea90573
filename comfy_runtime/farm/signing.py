"""Signed webhooks in the Standard Webhooks scheme (standardwebhooks.com), the one Replicate uses.

Each delivery carries three headers:
    webhook-id         one id per message, the same on every retry of it (a receiver may drop repeats)
    webhook-timestamp  seconds since the epoch at this attempt (a receiver refuses ones older than ~5 minutes)
    webhook-signature  `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the token's secret
The secret is `whsec_<base64 of 32 random bytes>`, shown once when the token is created (farm/tokens.py); the
key is the decoded bytes after the prefix. Predictions without a token (auth off, the jobs CLI) go unsigned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from comfy_runtime.farm.tokens import SECRET_PREFIX, secret_of

log = logging.getLogger(__name__)

Signer = Callable[[bytes], dict[str, str]]


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def signer(secret: str, message_id: str | None = None) -> Signer:
    """Headers for each attempt of one message: the id stays, the timestamp and signature are the attempt's."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"

    def headers(body: bytes) -> dict[str, str]:
        now = int(time.time())
        return {"webhook-id": message_id, "webhook-timestamp": str(now),
                "webhook-signature": signature(secret, message_id, now, body)}

    return headers


def signer_for(store: Any, row: dict[str, Any]) -> Signer | None:
    """The signer for a prediction's webhook (its token's secret), or None when it has no token. Never raises: a
    lookup that fails (the database blinked) costs the signature, logged, not the render; the receiver refuses
    an unsigned delivery and GETs the prediction instead."""
    name = row.get("token_name")
    if name is None:
        return None
    try:
        with store.connection() as conn:
            secret = secret_of(conn, name)
    except Exception as error:
        log.warning("webhook of %s sent unsigned: its token's secret could not be read (%s)", row.get("id"),
                    type(error).__name__)
        return None
    if secret is None:  # the token row is never deleted, so this is a hand-edited database
        log.warning("webhook of %s sent unsigned: its token has no secret", row.get("id"))
        return None
    return signer(secret)


def verify(secret: str, body: bytes, headers: dict[str, str], tolerance_seconds: int = 300) -> bool:
    """The receiver's check, without a dependency (the standardwebhooks package does the same: docs/farm.md)."""
    headers = {key.lower(): value for key, value in headers.items()}
    try:
        message_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in headers.get("webhook-signature", "").split())
