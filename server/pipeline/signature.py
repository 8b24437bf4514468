"""Layercode's webhook signature: `layercode-signature: t=<unix seconds>,v1=<hex>`.

`<hex>` is HMAC-SHA256, keyed with the webhook secret, over the bytes `<t>.<raw body>`
(docs/protocol.md §3). The receiver recomputes it, compares in constant time and refuses
timestamps more than five minutes off, so a captured request cannot be replayed later. `verify`
is fed whatever a stranger sent, so it answers False to anything odd and never raises.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

HEADER = "layercode-signature"
TOLERANCE_S = 300

_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() accepts "²", int() does not
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The header value for `body`, stamped now unless a timestamp is given (tests)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(
    header: str | None,
    body: bytes,
    secret: str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True only for a well-formed, fresh signature of exactly this body with this secret.

    Several `v1=` entries are accepted (any may match), as signers do while rotating secrets.
    """
    if not isinstance(header, str) or not header or not secret:
        return False
    timestamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        value = value.strip()
        if name == "t" and timestamp is None and _TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif name == "v1" and _HEX_DIGEST.fullmatch(value):
            given.append(value.lower())
    if timestamp is None or not given:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, timestamp, body).encode()
    # No early exit: every candidate is compared, each in constant time.
    matches = [hmac.compare_digest(expected, candidate.encode()) for candidate in given]
    return any(matches)
