"""Every error answered as one clear line: the page ``error.html``, or ``{"error": "..."}``
for ``/api/`` (and ``/metrics``); never a traceback.

- an unknown session, roll, user or account (``NOT_FOUND``): 404;
- other bad input (``BadInput``, a bad or missing form field): 400, nothing written;
- Redis, the database or the broker busy or not answering (``RetryLater``): 503;
- a person must decide (``OperatorAction``): 409;
- HTTP errors (no such page 404, wrong method 405, forbidden 403) as raised;
- no login (``NotLoggedIn``): a page goes to ``/login?next=...`` (303), an API call gets 401;
- anything else: 500 with one line; the server's log has the traceback.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from trading.exceptions import (
    BadInput,
    OperatorAction,
    RetryLater,
    TradefleetError,
    UnknownSession,
)
from workers.db.roll_rows import UnknownRoll
from workers.db.user_rows import UnknownUser
from workers.web.auth import LOGIN_PATH, NotLoggedIn
from workers.web.deps import TEMPLATES

log = logging.getLogger(__name__)


class NotFound(BadInput):
    """Something the request names does not exist (an account, a roll id that is no number)."""


NOT_FOUND = (UnknownSession, UnknownRoll, UnknownUser, NotFound)


def wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/metrics"


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The one-line answer of an error (see the module)."""
    line = " ".join(message.split())[:1000] or "error"
    if wants_json(request):
        return JSONResponse({"error": line}, status_code=status, headers=headers)
    user = getattr(request.state, "user", None)
    try:
        return TEMPLATES.TemplateResponse(
            request,
            "error.html",
            {"status": status, "message": line, "user": user},
            status_code=status,
            headers=headers,
        )
    except Exception:
        log.exception("the error page did not render; answering in plain text")
        return PlainTextResponse(f"{status}: {line}", status_code=status, headers=headers)


def status_of(exc: TradefleetError) -> int:
    if isinstance(exc, NOT_FOUND):
        return 404
    if isinstance(exc, BadInput):
        return 400
    if isinstance(exc, RetryLater):
        return 503
    if isinstance(exc, OperatorAction):
        return 409
    return 500


async def _tradefleet_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TradefleetError)
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return error_page(request, status, str(exc) or type(exc).__name__)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"no such page: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 401 and exc.detail == "Unauthorized":
        message = "log in first"
    else:
        message = str(exc.detail)
    return error_page(request, exc.status_code, message, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in {"body", "query"})
        problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return error_page(request, 400, "bad request: " + "; ".join(problems))


async def _not_logged_in(request: Request, exc: Exception) -> Response:
    if wants_json(request):
        return JSONResponse({"error": "log in first"}, status_code=401)
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    query = urlencode({"next": target}) if request.method == "GET" and target != "/" else ""
    return RedirectResponse(LOGIN_PATH + ("?" + query if query else ""), status_code=303)


async def _service_error(request: Request, exc: Exception) -> Response:
    name = "Redis" if isinstance(exc, redis.RedisError) else "the database"
    log.error("%s %s: %s error: %s", request.method, request.url.path, name, exc)
    return error_page(request, 503, f"{name} is not answering or refused ({type(exc).__name__})")


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_page(
        request, 500, f"unexpected error ({type(exc).__name__}); the server's log has the details"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NotLoggedIn, _not_logged_in)
    app.add_exception_handler(TradefleetError, _tradefleet_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(redis.RedisError, _service_error)
    app.add_exception_handler(SQLAlchemyError, _service_error)
    app.add_exception_handler(Exception, _unexpected)
