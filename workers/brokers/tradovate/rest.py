"""Tradovate's REST API over one ``httpx.Client`` per process, made on first use (never at
import).

Failures are ``ServiceUnavailable``, never an empty answer: a timeout, a connection error, a
5xx (maintenance), a 429 still refused after a bounded number of waits, a penalty ticket
still given after a few waits, a body that is not JSON. 401 is ``Unauthorized`` (the caller
takes a fresh token and tries once more); 404 is ``NotFound``.

Rate limits: https://partner.tradovate.com/overview/core-concepts/rate-limits.md (HTTP 429,
no body) and https://partner.tradovate.com/overview/core-concepts/penalty-tickets.md (HTTP 200
with "p-ticket" and "p-time": wait, then send the identical body with "p-ticket" added).
A 429 waits ``Retry-After`` seconds when sent, else 1 s, 2 s, 4 s ... at most 60 s, at most
``max_retries`` times.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx

from trading.exceptions import ServiceUnavailable
from workers.brokers.tradovate.messages import penalty_of

_log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
MAX_RETRIES = 4
MAX_PENALTIES = 3


class Unauthorized(ServiceUnavailable):
    """HTTP 401: the token is missing, expired or unknown."""


class NotFound(ServiceUnavailable):
    """HTTP 404: Tradovate has no such entity (e.g. /contract/find of an unknown name)."""


def dumps(value: Any) -> str:
    """JSON text with every ``Decimal`` written as a number from its own digits (never a
    float); everything else as ``json.dumps`` writes it."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value}")
        return format(value, "f")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def loads(content: bytes) -> Any:
    """A JSON body with numbers as ``Decimal`` (integers stay ``int``)."""
    return json.loads(content, parse_float=Decimal)


class RestClient:
    """One Tradovate REST endpoint (``base_url`` ends in ``/v1``). ``sleep`` is injectable
    (tests never sleep); ``transport`` too (``httpx.MockTransport`` offline)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._transport = transport
        self._sleep = sleep
        self.max_retries = max_retries
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.base_url + "/",
                    timeout=httpx.Timeout(self.timeout_s),
                    transport=self._transport,
                    headers={"Accept": "application/json"},
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request, with its waits: the answer's JSON (numbers as Decimal)."""
        where = f"{method} /{path.lstrip('/')}"
        payload = dict(body) if body is not None else None
        rate_waits = 0
        penalties = 0
        while True:
            response = self._send(method, path, token, params, payload, where)
            status = response.status_code
            if status == 429:
                if rate_waits >= self.max_retries:
                    raise ServiceUnavailable(
                        f"Tradovate rate limit: {where} still refused (429) after "
                        f"{rate_waits} waits"
                    )
                wait = _retry_after(response) or min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**rate_waits)
                rate_waits += 1
                _log.warning("Tradovate 429 on %s: waiting %.1f s", where, wait)
                self._sleep(min(wait, BACKOFF_MAX_S))
                continue
            if status == 401:
                raise Unauthorized(f"Tradovate refused the access token (401) on {where}")
            if status == 404:
                raise NotFound(f"Tradovate has no such entity (404) on {where}")
            if status >= 500:
                raise ServiceUnavailable(
                    f"Tradovate is not answering {where} (HTTP {status}, maintenance?)"
                )
            if status >= 400:
                raise ServiceUnavailable(f"Tradovate refused {where} (HTTP {status})")
            try:
                answer = loads(response.content)
            except ValueError:
                raise ServiceUnavailable(f"Tradovate answered {where} with no JSON") from None
            penalty = penalty_of(answer)
            if penalty is None:
                return answer
            if penalty.captcha:
                raise ServiceUnavailable(
                    f"Tradovate asks for a captcha on {where}: log in once by hand at "
                    "Tradovate (or wait about an hour) before the fleet tries again"
                )
            if penalties >= MAX_PENALTIES:
                raise ServiceUnavailable(
                    f"Tradovate still gives a penalty ticket on {where} after {penalties} waits"
                )
            penalties += 1
            _log.warning("Tradovate penalty ticket on %s: waiting %.1f s", where, penalty.wait_s)
            self._sleep(penalty.wait_s)
            payload = dict(payload or {})
            payload["p-ticket"] = penalty.ticket

    def _send(
        self,
        method: str,
        path: str,
        token: str | None,
        params: Mapping[str, Any] | None,
        payload: Mapping[str, Any] | None,
        where: str,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = dumps(payload) if payload is not None else None
        try:
            return self.client.request(
                method, path.lstrip("/"), params=params, content=content, headers=headers
            )
        except httpx.TimeoutException:
            raise ServiceUnavailable(
                f"Tradovate did not answer {where} within {self.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"Tradovate unreachable on {where} ({type(exc).__name__})"
            ) from None


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None  # the HTTP-date form: back off by our own schedule instead
