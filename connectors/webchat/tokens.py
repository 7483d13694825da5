"""Signed visitor tokens: the widget's proof of which anonymous contact it is, kept across reloads.

A token is ``v1.<visitor id>.<HMAC-SHA256 of the id, base64url>``; it carries no expiry because it stands
for an identity (like a cookie that remembers a cart), and it grants nothing beyond that visitor's chat.
"""

import base64
import hashlib
import hmac
import re
import secrets

from pydantic import SecretStr

_VISITOR = re.compile(r"^wv_[A-Za-z0-9_-]{22}$")


class InvalidToken(ValueError):
    """The token was not issued by this deployment (or was altered)."""


class VisitorTokens:
    """Issue and verify tokens with one deployment secret."""

    def __init__(self, secret: SecretStr):
        self._key = secret.get_secret_value().encode()

    def issue(self) -> tuple[str, str]:
        """A new visitor id and its token."""
        visitor = "wv_" + secrets.token_urlsafe(16)[:22]
        return visitor, self.sign(visitor)

    def sign(self, visitor: str) -> str:
        """The token for an existing visitor id."""
        return f"v1.{visitor}.{self._mac(visitor)}"

    def verify(self, token: object) -> str:
        """The visitor id inside a genuine token; InvalidToken otherwise."""
        if not isinstance(token, str) or len(token) > 200:
            raise InvalidToken("malformed visitor token")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not _VISITOR.match(parts[1]):
            raise InvalidToken("malformed visitor token")
        if not hmac.compare_digest(parts[2], self._mac(parts[1])):
            raise InvalidToken("visitor token signature does not match")
        return parts[1]

    def _mac(self, visitor: str) -> str:
        digest = hmac.new(self._key, b"kefu-webchat-visitor:" + visitor.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
