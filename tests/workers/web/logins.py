"""The console under test: ``create_app`` on a ``Desk`` (real Redis, a migrated database, the
paper broker), its users added as ``tradefleet web adduser`` does, and a ``TestClient`` (httpx)
that logs in through the real login form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from tests.kit.desk import Desk
from workers.db.user_rows import add_user
from workers.web.app import create_app
from workers.web.auth import SESSION_COOKIE, decode_login, mac
from workers.web.passwords import hash_password

PASSWORDS = {"alice": "alice-s3cret-pw", "victor": "victor-s3cret-pw"}
"""The operator alice and the viewer victor."""

ROLES = {"alice": "operator", "victor": "viewer"}


def add_users(desk: Desk) -> None:
    for name, password in PASSWORDS.items():
        add_user(desk.engine, name, ROLES[name], hash_password(password))


@contextmanager
def console(desk: Desk, app: FastAPI | None = None, **client: Any) -> Iterator[TestClient]:
    """A client of the desk's console (its lifespan run); redirects are not followed."""
    with TestClient(app or create_app(desk.settings), follow_redirects=False, **client) as found:
        yield found


def login_form(client: TestClient, next_path: str = "/") -> str:
    """GET the login form (its nonce cookie kept by the client); the form's token."""
    page = client.get("/login", params={"next": next_path})
    assert page.status_code == 200, page.text
    found = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def log_in(
    client: TestClient, name: str, password: str | None = None, next_path: str = "/"
) -> Response:
    """The login form, then its POST; the answer (303 on success)."""
    token = login_form(client, next_path)
    return client.post(
        "/login",
        data={
            "username": name,
            "password": PASSWORDS[name] if password is None else password,
            "login_token": token,
            "next": next_path,
        },
    )


def logged_in(client: TestClient, name: str) -> TestClient:
    answer = log_in(client, name)
    assert answer.status_code == 303, answer.text
    return client


def csrf(client: TestClient, desk: Desk) -> str:
    """The CSRF token of the client's login (what every page's forms carry)."""
    login = decode_login(desk.settings.web, client.cookies.get(SESSION_COOKIE))
    assert login is not None
    return mac(desk.settings.web, "csrf", login.secret)
