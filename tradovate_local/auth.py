"""Credentials, access tokens and penalty tickets. No I/O; times are passed in.

Access token request and answer:
https://partner.tradovate.com/api/rest-api-endpoints/authentication/access-token-request
(``{name, password, appId, appVersion, cid, sec, deviceId}`` → ``{accessToken, mdAccessToken,
expirationTime, userStatus, userId, name, hasLive}`` or ``{errorText}``).
Renewal: https://partner.tradovate.com/api/rest-api-endpoints/authentication/renew-access-token
(GET; the same answer with a new token and expiry).
Penalty tickets: https://partner.tradovate.com/overview/core-concepts/penalty-tickets (an HTTP
200 whose body is ``{"p-ticket", "p-time", "p-captcha"}``; wait p-time seconds, then send the
identical body again with ``"p-ticket"`` added).

The password and the app secret are kept only as salted PBKDF2 hashes and compared with
``hmac.compare_digest``; tokens are kept only as SHA-256 digests. None of them is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

_ITERATIONS = 100_000


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, _ITERATIONS)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class User:
    id: int
    name: str
    cid: str
    _salt: bytes
    _password: bytes
    _sec: bytes

    @classmethod
    def create(cls, user_id: int, name: str, password: str, cid: str, sec: str) -> User:
        salt = secrets.token_bytes(16)
        return cls(user_id, name, cid, salt, _hash(password, salt), _hash(sec, salt))

    def check(self, name: object, password: object, cid: object, sec: object) -> bool:
        if not isinstance(password, str) or not isinstance(sec, str):
            return False
        ok_name = hmac.compare_digest(str(name).encode(), self.name.encode())
        ok_cid = hmac.compare_digest(str(cid).encode(), self.cid.encode())
        ok_password = hmac.compare_digest(_hash(password, self._salt), self._password)
        ok_sec = hmac.compare_digest(_hash(sec, self._salt), self._sec)
        return ok_name and ok_cid and ok_password and ok_sec

    def entity(self) -> dict[str, Any]:
        # User entity in the syncrequest answer (users/sync-request). assumed fields.
        return {"id": self.id, "name": self.name, "status": "Active", "professional": False}

    def __repr__(self) -> str:  # never show the hashes
        return f"User(id={self.id}, name={self.name!r})"


@dataclass
class Session:
    user_id: int
    expires: datetime
    kind: str  # "access" or "md"


@dataclass
class Ticket:
    expires_wait: datetime  # the time before which the ticket is not honoured


class Tokens:
    """Issued tokens (by digest), penalty tickets, and the expire-now fault."""

    def __init__(self, lifetime: timedelta) -> None:
        self.lifetime = lifetime
        self._sessions: dict[bytes, Session] = {}
        self._tickets: dict[bytes, Ticket] = {}

    def issue(self, user: User, now: datetime) -> dict[str, Any]:
        access = secrets.token_urlsafe(32)
        md = secrets.token_urlsafe(32)
        expires = now + self.lifetime
        self._sessions[_digest(access)] = Session(user.id, expires, "access")
        self._sessions[_digest(md)] = Session(user.id, expires, "md")
        return {
            "accessToken": access,
            "mdAccessToken": md,
            "expirationTime": expires,
            "userStatus": "Active",
            "userId": user.id,
            "name": user.name,
            "hasLive": False,
        }

    def session(self, token: str | None, now: datetime, kinds: tuple[str, ...]) -> Session | None:
        if not token:
            return None
        found = self._sessions.get(_digest(token))
        if found is None or found.kind not in kinds:
            return None
        if found.expires <= now:
            del self._sessions[_digest(token)]
            return None
        return found

    def expire_all(self) -> None:
        self._sessions.clear()

    def penalty(self, seconds: int, captcha: bool, now: datetime) -> dict[str, Any]:
        ticket = secrets.token_urlsafe(16)
        self._tickets[_digest(ticket)] = Ticket(now + timedelta(seconds=seconds))
        return {"p-ticket": ticket, "p-time": seconds, "p-captcha": captcha}

    def honour(self, ticket: object, now: datetime) -> bool | None:
        """A ticket sent back: True if honoured (used up), False if sent too early or unknown,
        None if there was none."""
        if ticket is None:
            return None
        if not isinstance(ticket, str):
            return False
        found = self._tickets.get(_digest(ticket))
        if found is None or now < found.expires_wait:
            return False
        del self._tickets[_digest(ticket)]
        return True
