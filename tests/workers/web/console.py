"""The console under test: the real app on a fleet's stores, its user set by a dependency
override (the login is the auth module's, tested there), served in-process (``TestClient``)
or by a real uvicorn server on a free port (for the event streams), and the server-sent
events read with a deadline."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.testclient import TestClient

from tests.kit.wait import wait_until
from trading.exceptions import BadInput, UnknownSession
from workers.settings import Settings
from workers.web.app import create_app
from workers.web.auth import User, csrf_token, current_user, login_checker

OPERATOR = User("olga", "operator")
VIEWER = User("victor", "viewer")
CSRF = "csrf-of-this-login"


def _status(code: int) -> Callable[[Request, Exception], Response]:
    def answer(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=code)

    return answer


def console_app(settings: Settings, user: User = OPERATOR) -> FastAPI:
    """The console on ``settings``, every request made by ``user``. Until the auth module's
    error pages are in the app, stand-ins answer what they answer: 404 for an unknown
    session, 400 for bad input (the app's own handlers win once they exist)."""
    app = create_app(settings)
    app.dependency_overrides[current_user] = lambda: user
    app.dependency_overrides[login_checker] = lambda: lambda request: True
    app.dependency_overrides[csrf_token] = lambda: CSRF
    for error, code in ((UnknownSession, 404), (BadInput, 400)):
        if error not in app.exception_handlers:
            app.add_exception_handler(error, _status(code))
    return app


@contextmanager
def console(settings: Settings, user: User = OPERATOR) -> Iterator[TestClient]:
    with TestClient(console_app(settings, user)) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread; its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=15, what="the console to serve")
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def read_events(
    base_url: str,
    path: str,
    accept: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """Read the stream at ``path`` until a ``snapshot`` event whose data ``accept`` takes
    (or the deadline): the response headers, every line read, and that event's data."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    with (
        httpx.Client(timeout=httpx.Timeout(5.0)) as client,
        client.stream("GET", base_url + path) as response,
    ):
        assert response.status_code == 200, response.read()
        name = ""
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name == "snapshot":
                data = json.loads(line.removeprefix("data: "))
                if accept(data):
                    return dict(response.headers), lines, data
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"no accepted snapshot from {path} in {timeout}s: {lines[-6:]}")
