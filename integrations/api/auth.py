"""Bearer tokens, checked against the SHA-256 digests in ``api.tokens``.

The station never stores a token, only its hex SHA-256. Every configured
digest is compared, in constant time, whatever the outcome, so the time taken
tells nothing about which token (if any) came close.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from email.utils import parsedate_to_datetime

from station.config import TokenEntry


class TokenCheck:
    def __init__(self, tokens: list[TokenEntry]) -> None:
        self._digests = tuple((entry.name, bytes.fromhex(entry.sha256)) for entry in tokens)
        self._date_trusted = frozenset(entry.name for entry in tokens if entry.trust_date)

    def trusts_date(self, name: str) -> bool:
        """Whether the ``Date`` of this token's requests may set the clock's trust."""
        return name in self._date_trusted

    def identify(self, authorization: str | None) -> str | None:
        """The name of the token presented in an ``Authorization`` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for name, digest in self._digests:
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        return found


def hash_token(token: str) -> str:
    """The value to put in ``api.tokens[].sha256`` for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_http_date(value: str | None) -> datetime | None:
    """An RFC 9110 ``Date`` header as an aware UTC datetime, None if unusable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed
