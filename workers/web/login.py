"""``GET /login`` (the form), ``POST /login`` (fields ``username``, ``password``), ``POST
/logout``.

The login form is protected against login CSRF (a forged login into someone else's account):
``GET /login`` sets the short-lived signed cookie ``tf_login`` holding a random nonce, and the
form carries an HMAC of it; ``POST /login`` needs both (and SameSite keeps a cross-site form
from sending the cookie).

Failed logins are counted in Redis per user name AND per client address, each in a window of
``login_window_s`` from its first failure. An attempt is counted before its password is
checked (and uncounted if it succeeds), so parallel guesses cannot slip past the limit: once
``login_max_failures`` are reached the answer is 429 for that name or address, even with the
right password, until the window ends. Every failure and refusal is logged with the user name
and the address; a password never is.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Annotated

import redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature

from workers.db.user_rows import get_user
from workers.settings import WebSettings
from workers.web.auth import (
    LOGIN_PATH,
    SESSION_COOKIE,
    Login,
    encode_login,
    mac,
    password_fingerprint,
    request_login,
    revoke,
    signer,
)
from workers.web.deps import TEMPLATES, runtime, settings
from workers.web.flash import safe_next
from workers.web.passwords import verify_password

log = logging.getLogger(__name__)

router = APIRouter()

LOGIN_COOKIE = "tf_login"
LOGIN_SALT = "tradefleet.console.login-form"
LOGIN_FORM_MAX_AGE_S = 3600
MAX_NAME = 64
MAX_PASSWORD = 1024


def client_address(request: Request) -> str:
    """The peer's address as the server saw it (no forwarded header is trusted)."""
    return request.client.host if request.client is not None else "unknown"


def _failure_keys(name: str, address: str) -> list[str]:
    user = hashlib.sha256(name.encode()).hexdigest()[:32]
    return [f"tf:web:login-failures:user:{user}", f"tf:web:login-failures:addr:{address[:100]}"]


def take_attempt(client: redis.Redis, web: WebSettings, name: str, address: str) -> bool:
    """Count one attempt against the name and the address (each window starts at its first
    count); False, and nothing more to do, if either was at its limit already."""
    keys = _failure_keys(name, address)
    with client.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.set(key, 0, ex=web.login_window_s, nx=True)
            pipe.incr(key)
        counted = pipe.execute()[1::2]
    return all(int(n) <= web.login_max_failures for n in counted)


def give_back_attempt(client: redis.Redis, name: str, address: str) -> None:
    """An attempt that succeeded is no failure."""
    with client.pipeline(transaction=True) as pipe:
        for key in _failure_keys(name, address):
            pipe.decr(key)
        pipe.execute()


def _form_page(
    request: Request, next_path: str, message: str | None = None, status: int = 200
) -> Response:
    """The login form with a fresh nonce (its cookie set on the answer)."""
    web = settings(request).web
    nonce = secrets.token_urlsafe(24)
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {
            "user": None,
            "next": next_path,
            "login_token": mac(web, "login-form", nonce),
            "message": message,
        },
        status_code=status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        str(signer(web, LOGIN_SALT).dumps(nonce)),
        max_age=LOGIN_FORM_MAX_AGE_S,
        path=LOGIN_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def _form_token_ok(request: Request, given: str) -> bool:
    web = settings(request).web
    try:
        nonce = signer(web, LOGIN_SALT).loads(
            request.cookies.get(LOGIN_COOKIE, ""), max_age=LOGIN_FORM_MAX_AGE_S
        )
    except BadSignature:
        return False
    if not isinstance(nonce, str):
        return False
    return secrets.compare_digest(given.encode(), mac(web, "login-form", nonce).encode())


@router.get(LOGIN_PATH)
def login_form(request: Request, next: str = "/") -> Response:
    return _form_page(request, safe_next(next))


@router.post(LOGIN_PATH)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=4096)],
    login_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    target = safe_next(next)
    address = client_address(request)
    if not _form_token_ok(request, login_token):
        log.warning("login form refused (stale or forged) for user %r from %s", username, address)
        return _form_page(request, target, "The login form expired: log in again.", 403)
    name = username.strip()
    if not name or not password:
        return _form_page(request, target, "Enter a user name and a password.", 400)
    rt = runtime(request)
    web = settings(request).web
    if not take_attempt(rt.redis, web, name, address):
        log.warning("login refused for user %r from %s: too many failed logins", name, address)
        minutes = max(1, round(web.login_window_s / 60))
        message = f"Too many failed logins: try again in up to {minutes} minute(s)."
        return _form_page(request, target, message, 429)
    row = get_user(rt.engine, name) if len(name) <= MAX_NAME else None
    if not verify_password(None if row is None else row.password_hash, password[:MAX_PASSWORD]):
        log.warning("login failed for user %r from %s", name, address)
        return _form_page(request, target, "Wrong user name or password.", 401)
    assert row is not None
    give_back_attempt(rt.redis, name, address)
    log.info("login: user %s (%s) from %s", row.name, row.role, address)
    token = Login(
        row.name,
        int(time.time()),
        secrets.token_urlsafe(32),
        password_fingerprint(web, row.password_hash),
    )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        encode_login(web, token),
        max_age=web.session_max_age_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End this login (``check_csrf`` ran first: a valid login and its token)."""
    login = request_login(request)
    if login is not None:
        revoke(request, login)
        log.info("logout: user %s from %s", login.name, client_address(request))
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
