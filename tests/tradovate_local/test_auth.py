"""Access tokens over real HTTP: request, renewal, expiry, penalty tickets, 429, 401."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from tests.kit.tradovate_local import LocalTradovate, credentials
from tests.kit.wait import wait_until

pytestmark = pytest.mark.integration


def test_token_request_renew_and_bearer(tv: LocalTradovate) -> None:
    answer = tv.token()
    assert set(answer) >= {
        "accessToken",
        "mdAccessToken",
        "expirationTime",
        "userStatus",
        "userId",
        "name",
        "hasLive",
    }
    assert answer["expirationTime"].endswith("Z")
    token = answer["accessToken"]
    accounts = tv.v1("GET", "account/list", token=token)
    assert [a["name"] for a in accounts] == ["DEMO0001"]
    for method in ("GET", "POST"):
        renewed = tv.v1(method, "auth/renewaccesstoken", token=token)
        assert renewed["accessToken"] != token
        assert tv.v1("GET", "account/list", token=renewed["accessToken"]) == accounts
    status, _, _ = tv.call("GET", "/v1/account/list")
    assert status == 401
    status, _, _ = tv.call("GET", "/v1/account/list", token="not-a-token")
    assert status == 401


def test_bad_credentials_answer_error_text(tv: LocalTradovate) -> None:
    answer = tv.v1("POST", "auth/accesstokenrequest", credentials(password="wrong"))
    assert set(answer) == {"errorText"}
    answer = tv.v1("POST", "auth/accesstokenrequest", credentials(sec="wrong"))
    assert set(answer) == {"errorText"}
    assert "pa55-word" not in tv.log.read_text()


def test_tokens_expire(start_tv: Callable[..., LocalTradovate]) -> None:
    tv = start_tv("--token-minutes", "0.02")  # 1.2 s
    token = tv.token()["accessToken"]
    assert tv.call("GET", "/v1/account/list", token=token)[0] == 200
    wait_until(
        lambda: tv.call("GET", "/v1/account/list", token=token)[0] == 401,
        timeout=5,
        what="the token to expire",
    )


def test_expire_tokens_fault(tv: LocalTradovate) -> None:
    token = tv.token()["accessToken"]
    tv.control("POST", "faults", {"expire_tokens": True})
    assert tv.call("GET", "/v1/account/list", token=token)[0] == 401
    assert tv.call("GET", "/v1/account/list", token=tv.token()["accessToken"])[0] == 200


def test_p_ticket_then_send_again_with_the_ticket(tv: LocalTradovate) -> None:
    tv.control("POST", "faults", {"p_ticket": {"count": 1, "seconds": 0}})
    first = tv.v1("POST", "auth/accesstokenrequest", credentials())
    assert (first["p-time"], first["p-captcha"]) == (0, False)
    assert "accessToken" not in first
    answer = tv.v1(
        "POST", "auth/accesstokenrequest", credentials(**{"p-ticket": first["p-ticket"]})
    )
    assert "accessToken" in answer


def test_p_ticket_sent_back_too_early_earns_another(tv: LocalTradovate) -> None:
    tv.control("POST", "faults", {"p_ticket": {"count": 1, "seconds": 30, "captcha": True}})
    first = tv.v1("POST", "auth/accesstokenrequest", credentials())
    assert (first["p-time"], first["p-captcha"]) == (30, True)
    early = tv.v1("POST", "auth/accesstokenrequest", credentials(**{"p-ticket": first["p-ticket"]}))
    assert "p-ticket" in early and "accessToken" not in early


def test_rate_limit_answers_429_with_retry_after(tv: LocalTradovate) -> None:
    token = tv.token()["accessToken"]
    tv.control("POST", "faults", {"rate_limit": {"count": 2, "retry_after": 3}})
    for _ in range(2):
        status, body, headers = tv.call("GET", "/v1/account/list", token=token)
        assert (status, body, headers.get("Retry-After")) == (429, None, "3")
    assert tv.call("GET", "/v1/account/list", token=token)[0] == 200
    seen = tv.control("GET", "state")["requests"]
    assert (seen["account/list"], seen["auth/accesstokenrequest"]) == (3, 1)


def test_control_needs_its_token(tv: LocalTradovate) -> None:
    assert tv.call("GET", "/_local/state")[0] == 403
    assert tv.call("GET", "/_local/state", headers={"X-Local-Control": "nope"})[0] == 403


def test_contracts(tv: LocalTradovate) -> None:
    token = tv.token()["accessToken"]
    es = tv.v1("GET", "contract/find?name=ESZ3", token=token)
    assert es["name"] == "ESZ3" and es["providerTickSize"] == 0.25
    assert tv.v1("GET", f"contract/item?id={es['id']}", token=token) == es
    maturity = tv.v1("GET", f"contractMaturity/item?id={es['contractMaturityId']}", token=token)
    assert maturity["expirationMonth"] == 201312
    assert maturity["expirationDate"].startswith("2013-12-20")
    product = tv.v1("GET", f"product/item?id={maturity['productId']}", token=token)
    assert (product["name"], product["valuePerPoint"], product["tickSize"]) == ("ES", 50, 0.25)
    gc = tv.v1("GET", "contract/find?name=GCZ7", token=token)
    gc_product = tv.v1(
        "GET",
        "product/item?id="
        + str(
            tv.v1("GET", f"contractMaturity/item?id={gc['contractMaturityId']}", token=token)[
                "productId"
            ]
        ),
        token=token,
    )
    assert (gc_product["valuePerPoint"], gc_product["tickSize"]) == (100, Decimal("0.1"))
    assert tv.call("GET", "/v1/contract/find?name=ESZ9", token=token)[0] == 404
