"""Password hashing (argon2id) and short-lived HMAC-signed bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): strong, yet a
# login costs tens of milliseconds rather than half a second on a small 2-core host.
# Hashes made with other parameters are upgraded transparently at the next login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Verified against when the user does not exist, so timing does not reveal usernames.
_DUMMY_HASH = _hasher.hash("brigade-dummy-password-for-timing")

TOKEN_PREFIX = "v1"  # noqa: S105 - a format tag, not a secret
MAX_TOKEN_LENGTH = 2048


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    role: str
    issued_at: int
    expires_at: int


class InvalidToken(Exception):
    pass


class TokenSigner:
    """``v1.<payload>.<signature>``: base64url JSON claims, HMAC-SHA256 over both."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        # Derive a purpose-bound key so the same secret can safely sign other things.
        self._key = hmac.new(secret.encode(), b"brigade-api bearer token v1", "sha256").digest()
        self.ttl_seconds = ttl_seconds

    def _sign(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def issue(self, user_id: int, role: str, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {"sub": user_id, "role": role, "iat": issued, "exp": issued + self.ttl_seconds}
        payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{TOKEN_PREFIX}.{payload}".encode()
        return f"{TOKEN_PREFIX}.{payload}.{_b64encode(self._sign(signing_input))}"

    def verify(self, token: str, *, now: float | None = None) -> TokenClaims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise InvalidToken("malformed token")
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        try:
            signature = _b64decode(parts[2])
            raw = _b64decode(parts[1])
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken("malformed token") from exc
        if not hmac.compare_digest(signature, self._sign(signing_input)):
            raise InvalidToken("bad signature")
        try:
            claims = json.loads(raw)
            result = TokenClaims(
                user_id=int(claims["sub"]),
                role=str(claims["role"]),
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidToken("malformed claims") from exc
        current = time.time() if now is None else now
        if current >= result.expires_at:
            raise InvalidToken("token expired")
        return result
