"""Secrets of the identity domain: SMS codes, refresh tokens, OCPP idTags.

- Codes: 6 digits from `secrets`, stored as HMAC-SHA256 under a key derived from
  JWT_SECRET and bound to the challenge id; compared in constant time.
- Refresh tokens: 256 random bits, stored as SHA-256 (high entropy needs no key or salt).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from functools import lru_cache

CODE_DIGITS = 6
ID_TAG_PREFIX = "VW"


@lru_cache(maxsize=8)
def _otp_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"voltway/otp-code/v1", hashlib.sha256).digest()


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def hash_code(jwt_secret: str, challenge_id: uuid.UUID, code: str) -> bytes:
    message = challenge_id.bytes + code.encode()
    return hmac.new(_otp_key(jwt_secret), message, hashlib.sha256).digest()


def code_matches(jwt_secret: str, challenge_id: uuid.UUID, code: str, stored: bytes) -> bool:
    return hmac.compare_digest(hash_code(jwt_secret, challenge_id, code), bytes(stored))


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_id_tag() -> str:
    """20 characters (OCPP 1.6 CiString20), upper case: 'VW' + 72 random bits in hex."""
    return ID_TAG_PREFIX + secrets.token_hex(9).upper()
