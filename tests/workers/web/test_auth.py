"""The console's login on a real app, real Redis and a real database: the signed session
cookie, its expiry, the per-name and per-address limit on failed logins, login CSRF, logout,
roles, CSRF on every POST, and errors as one line."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.kit.desk import SECRET_KEY, Desk
from tests.workers.web.console import serving
from tests.workers.web.logins import PASSWORDS, add_users, console, csrf, log_in, logged_in
from trading.exceptions import BadInput
from workers.db.user_rows import delete_user, get_user, update_user
from workers.web.app import create_app
from workers.web.auth import (
    SESSION_COOKIE,
    SESSION_SALT,
    Login,
    User,
    current_user,
    encode_login,
    password_fingerprint,
)
from workers.web.passwords import hash_password

pytestmark = pytest.mark.integration

MAX_AGE_S = 600
FAILURES = 3


@pytest.fixture(params=["postgresql", "sqlite"])
def desk(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Desk]:
    url: str = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    with Desk(redis_url, url, session_max_age_s=MAX_AGE_S, login_max_failures=FAILURES) as found:
        add_users(found)
        yield found


def probe_app(desk: Desk) -> FastAPI:
    """The console with a page and an API route that need a login, and routes that fail."""
    app = create_app(desk.settings)

    def who(user: User = Depends(current_user)) -> dict[str, str]:  # noqa: B008
        return {"user": user.name, "role": user.role}

    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    def refused() -> None:
        raise BadInput("that field is no good")

    app.add_api_route("/probe", who)
    app.add_api_route("/api/probe", who)
    app.add_api_route("/boom", boom)
    app.add_api_route("/api/boom", boom)
    app.add_api_route("/refused", refused)
    return app


@pytest.fixture
def client(desk: Desk) -> Iterator[TestClient]:
    with console(desk, probe_app(desk)) as found:
        yield found


def session_cookie(answer: Any) -> str:
    (header,) = [h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)]
    return str(header)


def test_login_sets_a_signed_http_only_cookie_and_goes_to_next(
    desk: Desk, client: TestClient
) -> None:
    assert client.get("/probe").status_code == 303
    answer = log_in(client, "alice", next_path="/probe?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/probe?x=1"
    header = session_cookie(answer).lower()
    assert "httponly" in header and "samesite=lax" in header
    assert f"max-age={MAX_AGE_S}" in header and "path=/" in header
    assert PASSWORDS["alice"] not in header
    assert client.get("/probe").json() == {"user": "alice", "role": "operator"}
    assert client.get("/api/probe").json() == {"user": "alice", "role": "operator"}


def test_without_a_login_a_page_goes_to_the_form_and_the_api_answers_401(
    client: TestClient,
) -> None:
    page = client.get("/probe", params={"a": "b"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fprobe%3Fa%3Db"
    api = client.get("/api/probe")
    assert api.status_code == 401 and api.json() == {"error": "log in first"}
    client.cookies.set(SESSION_COOKIE, "forged.cookie.value")
    assert client.get("/api/probe").status_code == 401


def test_a_next_elsewhere_is_not_followed(client: TestClient) -> None:
    for elsewhere in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "x"):
        client.cookies.clear()
        answer = log_in(client, "victor", next_path=elsewhere)
        assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_bad_password_and_unknown_user_answer_alike_and_log_no_password(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.web")
    wrong = log_in(client, "alice", "not-the-password")
    nobody = log_in(client, "nobody", "guess-two")
    for answer in (wrong, nobody):
        assert answer.status_code == 401 and "Wrong user name or password." in answer.text
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("workers.web")]
    assert "login failed for user 'alice' from testclient" in lines
    assert "login failed for user 'nobody' from testclient" in lines
    for secret in ("not-the-password", "guess-two", PASSWORDS["alice"]):
        assert not any(secret in line for line in lines), lines


def test_failed_logins_are_limited_per_name_even_with_the_right_password(
    desk: Desk, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = client.app
    for n in range(FAILURES):
        other = TestClient(app, follow_redirects=False, client=(f"10.0.0.{n + 1}", 1000))
        assert log_in(other, "alice", f"wrong-{n}").status_code == 401
    caplog.set_level(logging.WARNING, logger="workers.web")
    fresh = TestClient(app, follow_redirects=False, client=("10.0.0.99", 1000))
    refused = log_in(fresh, "alice")
    assert refused.status_code == 429 and "Too many failed logins" in refused.text
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    assert any("too many failed logins" in r.getMessage() for r in caplog.records)
    assert logged_in(fresh, "victor").get("/probe").json()["user"] == "victor"


def test_failed_logins_are_limited_per_address(desk: Desk, client: TestClient) -> None:
    for n in range(FAILURES):
        assert log_in(client, "alice" if n == 0 else "victor", f"wrong-{n}").status_code == 401
    assert log_in(client, "alice").status_code == 429
    elsewhere = TestClient(client.app, follow_redirects=False, client=("10.9.9.9", 1000))
    assert logged_in(elsewhere, "alice").get("/probe").json()["user"] == "alice"


def test_a_success_is_not_counted_as_a_failure(client: TestClient) -> None:
    for _ in range(FAILURES + 2):
        client.cookies.clear()
        assert log_in(client, "alice").status_code == 303


def test_the_login_form_needs_its_own_token(desk: Desk, client: TestClient) -> None:
    forged = client.post(
        "/login", data={"username": "alice", "password": PASSWORDS["alice"], "login_token": "x"}
    )
    assert forged.status_code == 403
    assert SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    missing = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert missing.status_code == 403


def test_an_expired_or_forged_cookie_is_refused(desk: Desk, client: TestClient) -> None:
    web = desk.settings.web
    fingerprint = password_fingerprint(web, hash_alice(desk))
    now = int(time.time())
    fresh = encode_login(web, Login("alice", now, "s" * 43, fingerprint))
    client.cookies.set(SESSION_COOKIE, fresh)
    assert client.get("/api/probe").status_code == 200

    old_login = encode_login(web, Login("alice", now - MAX_AGE_S - 5, "s" * 43, fingerprint))
    client.cookies.set(SESSION_COOKIE, old_login)
    assert client.get("/api/probe").status_code == 401

    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - MAX_AGE_S - 5

    payload = {"u": "alice", "t": now, "c": "s" * 43, "p": fingerprint}
    old_signature = URLSafeTimedSerializer(SECRET_KEY, salt=SESSION_SALT, signer=OldSigner)
    client.cookies.set(SESSION_COOKIE, old_signature.dumps(payload))
    assert client.get("/api/probe").status_code == 401

    other_key = URLSafeTimedSerializer("another-key-" + "x" * 40, salt=SESSION_SALT)
    client.cookies.set(SESSION_COOKIE, other_key.dumps(payload))
    assert client.get("/api/probe").status_code == 401


def hash_alice(desk: Desk) -> str:
    row = get_user(desk.engine, "alice")
    assert row is not None
    return row.password_hash


def test_the_user_is_read_again_on_every_request(desk: Desk, client: TestClient) -> None:
    logged_in(client, "alice")
    update_user(desk.engine, "alice", "viewer", hash_alice(desk))
    assert client.get("/api/probe").json() == {"user": "alice", "role": "viewer"}
    token = csrf(client, desk)
    refused = client.post("/actions/halt", data={"csrf_token": token})
    assert refused.status_code == 403

    update_user(desk.engine, "alice", "operator", hash_password("a-new-password"))
    assert client.get("/api/probe").status_code == 401

    client.cookies.clear()
    logged_in(client, "victor")
    delete_user(desk.engine, "victor")
    assert client.get("/api/probe").status_code == 401


def test_logout_ends_the_login_even_for_a_copy_of_the_cookie(
    desk: Desk, client: TestClient
) -> None:
    logged_in(client, "alice")
    copy = client.cookies.get(SESSION_COOKIE)
    assert client.post("/logout").status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf(client, desk)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/api/probe").status_code == 401
    client.cookies.set(SESSION_COOKIE, str(copy))
    assert client.get("/api/probe").status_code == 401


def test_errors_are_one_line_never_a_traceback(desk: Desk) -> None:
    with console(desk, probe_app(desk), raise_server_exceptions=False) as client:
        logged_in(client, "alice")
        missing = client.get("/no/such/page")
        assert missing.status_code == 404
        assert "no such page: /no/such/page" in missing.text
        assert client.get("/api/nothing").json() == {"error": "no such page: /api/nothing"}
        wrong_method = client.get("/actions/halt")
        assert wrong_method.status_code == 405
        assert "GET is not allowed on /actions/halt" in wrong_method.text
        boom = client.get("/boom")
        assert boom.status_code == 500
        assert "unexpected error (RuntimeError)" in boom.text
        assert "Traceback" not in boom.text and "/etc/passwd" not in boom.text
        assert client.get("/api/boom").json() == {
            "error": "unexpected error (RuntimeError); the server's log has the details"
        }
        refused = client.get("/refused")
        assert refused.status_code == 400 and "that field is no good" in refused.text
        assert re.search(r'<p class="error-line">[^<]+</p>', refused.text)


def test_an_event_stream_ends_when_its_login_does(desk: Desk) -> None:
    """A stream asks again before every snapshot: a logout elsewhere ends it, with a last
    ``problem`` event, instead of pushing the fleet to a login that is over."""
    with (
        serving(create_app(desk.settings)) as url,
        httpx.Client(base_url=url, follow_redirects=False, timeout=5) as reader,
        httpx.Client(base_url=url, follow_redirects=False, timeout=5) as other,
    ):
        logged_in(reader, "alice")
        other.cookies.set(SESSION_COOKIE, str(reader.cookies.get(SESSION_COOKIE)))
        events: list[str] = []
        deadline = time.monotonic() + 20
        with reader.stream("GET", "/stream/fleet") as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                assert time.monotonic() < deadline, events
                if not line.startswith("event: "):
                    continue
                events.append(line.removeprefix("event: "))
                if events == ["snapshot"]:
                    out = other.post("/logout", data={"csrf_token": csrf(other, desk)})
                    assert out.status_code == 303
        assert events[0] == "snapshot" and events[-1] == "problem"
