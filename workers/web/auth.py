"""Who is asking: users with a role (viewer, operator), the signed session cookie, CSRF tokens.

A login (``workers.web.login``) sets the cookie ``tf_session``: signed with
``settings.web.secret_key`` (itsdangerous, its own salt), HttpOnly, SameSite=Lax, Secure over
HTTPS, expiring ``session_max_age_s`` after the login. It carries the user name, the login
time, a random secret of this login (the CSRF tokens derive from it) and a fingerprint of the
password hash the user had then. Every request re-reads the user from the database: a deleted
user, a changed password or a logout (``revoke``: the login's secret kept in Redis until the
cookie would expire anyway) ends the login; a changed role applies at once.

``current_user``: without a valid login a page request is sent to ``/login?next=...`` (303)
and an ``/api/`` request answered 401 JSON (``NotLoggedIn``, handled in ``workers.web.errors``).
``require_operator``: a viewer gets 403. ``check_csrf`` runs before every route: a POST other
than ``/login`` needs a valid login and its ``csrf_token`` form field (an HMAC of the login's
secret, compared in constant time), else 403 and nothing runs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from trading.exceptions import ServiceUnavailable
from workers.db.user_rows import get_user
from workers.settings import WebSettings
from workers.web.deps import runtime, settings

Role = Literal["viewer", "operator"]

SESSION_COOKIE = "tf_session"
CSRF_FIELD = "csrf_token"
LOGIN_PATH = "/login"
SESSION_SALT = "tradefleet.console.session"
CLOCK_SKEW_S = 60
"""A login time this far in the future is still accepted (clocks of several consoles)."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True, slots=True)
class Login:
    """What the session cookie carries."""

    name: str
    at: int
    """Login time, epoch seconds."""
    secret: str
    """This login's random secret: the CSRF tokens derive from it; a logout revokes it."""
    password: str
    """Fingerprint of the user's password hash at login: a new password ends the login."""


class NotLoggedIn(Exception):
    """No valid login: a page goes to the login form, an API request gets 401."""


def secret_key(web: WebSettings) -> str:
    key = web.secret_key.get_secret_value()
    if not key:
        raise ServiceUnavailable("the console has no secret key (TRADEFLEET_WEB_SECRET_KEY)")
    return key


def signer(web: WebSettings, salt: str) -> URLSafeTimedSerializer:
    """The serializer that signs (and checks) one kind of value with the console's key."""
    return URLSafeTimedSerializer(secret_key(web), salt=salt)


def mac(web: WebSettings, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` for ``purpose`` with the console's key, hex."""
    message = f"{purpose}\n{value}".encode()
    return hmac.new(secret_key(web).encode(), message, hashlib.sha256).hexdigest()


def password_fingerprint(web: WebSettings, password_hash: str) -> str:
    return mac(web, "password", password_hash)[:32]


def encode_login(web: WebSettings, login: Login) -> str:
    """The cookie value of ``login`` (signed now: its signature's time is the login's)."""
    payload = {"u": login.name, "t": login.at, "c": login.secret, "p": login.password}
    return str(signer(web, SESSION_SALT).dumps(payload))


def decode_login(web: WebSettings, cookie: str | None, now: float | None = None) -> Login | None:
    """The login a cookie carries, or None if it is missing, forged, malformed or expired
    (by its signature's time and by the login time it carries)."""
    if not cookie:
        return None
    max_age = web.session_max_age_s
    try:
        data: Any = signer(web, SESSION_SALT).loads(cookie, max_age=max_age)
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    name, at, secret, password = data.get("u"), data.get("t"), data.get("c"), data.get("p")
    if not (isinstance(name, str) and isinstance(secret, str) and isinstance(password, str)):
        return None
    if isinstance(at, bool) or not isinstance(at, int):
        return None
    current = time.time() if now is None else now
    if not current - max_age <= at <= current + CLOCK_SKEW_S:
        return None
    return Login(name, at, secret, password)


def request_login(request: Request) -> Login | None:
    """The valid login of this request's cookie (signature and age only), read once."""
    cached = request.scope.get("tradefleet.login", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    found = decode_login(settings(request).web, request.cookies.get(SESSION_COOKIE))
    request.scope["tradefleet.login"] = found
    return found


def revoked_key(login: Login) -> str:
    return f"tf:web:revoked:{hashlib.sha256(login.secret.encode()).hexdigest()[:32]}"


def revoke(request: Request, login: Login) -> None:
    """End ``login`` everywhere (a logout): its secret is refused until its cookie expires."""
    web = settings(request).web
    left = max(1, login.at + web.session_max_age_s - int(time.time()))
    runtime(request).redis.set(revoked_key(login), "1", ex=left)


def _user_of(request: Request, login: Login | None) -> User | None:
    """The user of ``login`` if it still holds: its user exists with the password it logged
    in with, and it was not revoked (a logout)."""
    if login is None:
        return None
    rt = runtime(request)
    row = get_user(rt.engine, login.name)
    web = settings(request).web
    if row is None or not hmac.compare_digest(
        password_fingerprint(web, row.password_hash), login.password
    ):
        return None
    if rt.redis.exists(revoked_key(login)):
        return None
    return User(row.name, row.role)


def current_user(request: Request) -> User:
    """The logged-in user of this request; without a valid session cookie, a page request is
    sent to ``/login`` and an API request answered 401."""
    user = _user_of(request, request_login(request))
    if user is None:
        raise NotLoggedIn
    request.state.user = user
    return user


def still_logged_in(request: Request) -> bool:
    """Whether this request's login holds NOW (a long answer, an event stream, asks again):
    not expired since the request began, not logged out, its user not deleted or given a new
    password."""
    login = decode_login(settings(request).web, request.cookies.get(SESSION_COOKIE))
    return _user_of(request, login) is not None


def login_checker() -> Callable[[Request], bool]:
    """How a long answer asks whether its login still holds (``still_logged_in``), as a
    dependency: where ``current_user`` is given (a test of the pages as a given user), so is
    this."""
    return still_logged_in


def require_operator(user: User = Depends(current_user)) -> User:  # noqa: B008
    """``current_user``, refused with 403 unless an operator."""
    if not user.can_act:
        raise HTTPException(
            403, f"{user.name} is a viewer: only an operator may act (ask for the operator role)"
        )
    return user


def csrf_token(request: Request) -> str:
    """The CSRF token of this request's login, for the hidden ``csrf_token`` field of every
    action form (checked on every POST); empty without a login."""
    login = request_login(request)
    if login is None:
        return ""
    return mac(settings(request).web, "csrf", login.secret)


async def check_csrf(request: Request) -> None:
    """Every POST but the login's carries the login's CSRF token (see the module)."""
    if request.method != "POST" or request.url.path == LOGIN_PATH:
        return
    if request_login(request) is None:
        raise NotLoggedIn
    form = await request.form()
    given = form.get(CSRF_FIELD)
    expected = csrf_token(request)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            403, "this form's CSRF token is missing or wrong: reload the page and try again"
        )
