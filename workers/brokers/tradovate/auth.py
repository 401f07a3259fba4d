"""Tradovate access tokens, shared by every process of a machine (and of the fleet) through
the sessions' Redis, so a fleet of workers holds ONE token per user instead of dozens.

- https://partner.tradovate.com/api/rest-api-endpoints/authentication/access-token-request.md:
  POST /auth/accesstokenrequest; "store access tokens to prevent overuse" of it
  (https://partner.tradovate.com/overview/quick-setup/auth-overview.md).
- https://partner.tradovate.com/api/rest-api-endpoints/authentication/renew-access-token.md:
  GET /auth/renewaccesstoken before expiry (the docs renew within 15 minutes of it).
- Penalty tickets (p-ticket / p-time / p-captcha) are waited out by ``rest.RestClient``.

The token lives in ``tf:tradovate:token:<id>`` (JSON, expiring with the token); whoever finds it
missing or close to expiry takes ``<key>:lock`` (``SET NX EX``), looks again, renews or
requests, writes, releases. The others keep using a token that is still valid, or wait for
the writer a bounded time. A 401 drops exactly the token that was refused (compare-and-delete)
and the next caller requests a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from trading.exceptions import ServiceUnavailable
from workers.brokers.tradovate.messages import (
    TokenAnswer,
    parse_token,
    token_request_body,
    utc_of,
)
from workers.brokers.tradovate.rest import RestClient, Unauthorized
from workers.settings import TradovateSettings

_log = logging.getLogger(__name__)

LOCK_TTL_S = 30
WAIT_FOR_WRITER_S = 20.0
POLL_S = 0.2

_DROP_IF_SAME = """
-- KEYS: token key   ARGV: the refused access token. Deletes the stored token only if it is
-- that one (a fresher one written meanwhile stays).
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, stored = pcall(cjson.decode, raw)
if ok and stored['accessToken'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Token:
    access_token: str
    md_access_token: str | None
    expires: datetime
    user_id: int | None

    def __repr__(self) -> str:
        return f"_Token(user_id={self.user_id}, expires={self.expires.isoformat()})"

    def left_s(self, now: float) -> float:
        return self.expires.timestamp() - now

    def to_json(self) -> str:
        return json.dumps(
            {
                "accessToken": self.access_token,
                "mdAccessToken": self.md_access_token,
                "expirationTime": self.expires.isoformat(),
                "userId": self.user_id,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> _Token | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["accessToken"]),
                data.get("mdAccessToken"),
                utc_of(data["expirationTime"], "stored token expiry"),
                None if data.get("userId") is None else int(data["userId"]),
            )
        except (ValueError, KeyError, TypeError, ServiceUnavailable):
            return None


def _answer_token(answer: TokenAnswer, previous: _Token | None) -> _Token:
    user_id = answer.user_id
    if user_id is None and previous is not None:
        user_id = previous.user_id
    md = answer.md_access_token or (previous.md_access_token if previous else None)
    return _Token(answer.access_token, md, answer.expiration_time, user_id)


class Tokens:
    """The access token of one Tradovate user, shared through ``client`` (the sessions'
    Redis). ``clock`` (epoch seconds) and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        settings: TradovateSettings,
        rest: RestClient,
        client: redis.Redis,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        wait_for_writer_s: float = WAIT_FOR_WRITER_S,
    ) -> None:
        self._settings = settings
        self._rest = rest
        self._redis = client
        self._clock = clock
        self._sleep = sleep
        self._wait_s = wait_for_writer_s
        ident = f"{rest.base_url}|{settings.username}".encode()
        self.key = f"tf:tradovate:token:{hashlib.sha256(ident).hexdigest()[:16]}"
        self._local: _Token | None = None
        self._mutex = threading.Lock()
        self._drop = client.register_script(_DROP_IF_SAME)
        self._release = client.register_script(_RELEASE)

    # the interface ---------------------------------------------------------------------------

    def access_token(self) -> str:
        return self._current().access_token

    def md_access_token(self) -> str:
        token = self._current()
        if not token.md_access_token:
            raise ServiceUnavailable("Tradovate gave no market-data token (mdAccessToken)")
        return token.md_access_token

    def user_id(self) -> int:
        token = self._current()
        if token.user_id is None:
            raise ServiceUnavailable("Tradovate's token answer carried no userId")
        return token.user_id

    def invalidate(self, refused: str) -> None:
        """Forget ``refused`` (a 401 answered it): here, and in Redis if still stored."""
        with self._mutex:
            if self._local is not None and self._local.access_token == refused:
                self._local = None
        with _answering():
            self._drop(keys=[self.key], args=[refused])

    # how ---------------------------------------------------------------------------------------

    def _fresh_enough(self, token: _Token | None) -> bool:
        return (
            token is not None and token.left_s(self._clock()) > self._settings.token_renew_margin_s
        )

    def _valid(self, token: _Token | None) -> bool:
        return token is not None and token.left_s(self._clock()) > 1.0

    def _read(self) -> _Token | None:
        with _answering():
            raw = self._redis.get(self.key)
        return _Token.from_json(raw) if isinstance(raw, bytes | str) else None

    def _write(self, token: _Token) -> None:
        ttl = max(1, int(token.left_s(self._clock())))
        with _answering():
            self._redis.set(self.key, token.to_json(), ex=ttl)

    def _current(self) -> _Token:
        with self._mutex:
            if self._fresh_enough(self._local):
                assert self._local is not None
                return self._local
            stored = self._read()
            if self._fresh_enough(stored):
                assert stored is not None
                self._local = stored
                return stored
            with self._writer_lock() as mine:
                token = self._refresh() if mine else self._wait_for_writer(stored)
            self._local = token
            return token

    @contextmanager
    def _writer_lock(self) -> Iterator[bool]:
        nonce = uuid.uuid4().hex
        with _answering():
            mine = bool(self._redis.set(self.key + ":lock", nonce, nx=True, ex=LOCK_TTL_S))
        try:
            yield mine
        finally:
            if mine:
                try:
                    self._release(keys=[self.key + ":lock"], args=[nonce])
                except redis.RedisError:
                    _log.warning("Tradovate token lock not released; it expires by itself")

    def _refresh(self) -> _Token:
        stored = self._read()  # another process may have written while we took the lock
        if self._fresh_enough(stored):
            assert stored is not None
            return stored
        token = None
        if stored is not None and self._valid(stored):
            try:
                token = self._renew(stored)
            except Unauthorized:
                token = None
        if token is None:
            token = self._request()
        self._write(token)
        return token

    def _renew(self, current: _Token) -> _Token:
        answer = self._rest.call("GET", "auth/renewaccesstoken", token=current.access_token)
        _log.info("Tradovate access token renewed")
        return _answer_token(parse_token(answer), current)

    def _request(self) -> _Token:
        settings = self._settings
        missing = [
            name
            for name, value in (
                ("TRADEFLEET_TRADOVATE_USERNAME", settings.username),
                ("TRADEFLEET_TRADOVATE_PASSWORD", settings.password.get_secret_value()),
                ("TRADEFLEET_TRADOVATE_APP_ID", settings.app_id),
                ("TRADEFLEET_TRADOVATE_SEC", settings.sec.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise ServiceUnavailable(f"Tradovate credentials are not set: {', '.join(missing)}")
        body = token_request_body(
            name=settings.username,
            password=settings.password.get_secret_value(),
            app_id=settings.app_id,
            app_version=settings.app_version,
            cid=settings.cid,
            sec=settings.sec.get_secret_value(),
            device_id=settings.device_id,
        )
        answer = self._rest.call("POST", "auth/accesstokenrequest", body=body)
        _log.info("Tradovate access token requested")
        return _answer_token(parse_token(answer), None)

    def _wait_for_writer(self, stored: _Token | None) -> _Token:
        if self._valid(stored):
            assert stored is not None
            return stored  # still good; the lock holder is renewing it
        deadline = self._clock() + self._wait_s
        while self._clock() < deadline:
            self._sleep(POLL_S)
            stored = self._read()
            if self._valid(stored):
                assert stored is not None
                return stored
        raise ServiceUnavailable(
            f"another process is getting the Tradovate token and has not written it in "
            f"{self._wait_s:g} s"
        )


@contextmanager
def _answering() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"the sessions' Redis is not answering ({type(exc).__name__})"
        ) from None


class Api:
    """Authorized calls: the shared token on each, and after a 401 one fresh token and one
    more try (a second 401 is ``Unauthorized``, a ``ServiceUnavailable``)."""

    def __init__(self, rest: RestClient, tokens: Tokens) -> None:
        self.rest = rest
        self.tokens = tokens

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        token = self.tokens.access_token()
        try:
            return self.rest.call(method, path, token=token, params=params, body=body)
        except Unauthorized:
            self.tokens.invalidate(token)
            token = self.tokens.access_token()
            return self.rest.call(method, path, token=token, params=params, body=body)

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.call("POST", path, body=body)


_shared: dict[tuple[str, float], RestClient] = {}
_shared_tokens: dict[tuple[str, str, int], Tokens] = {}
_shared_lock = threading.Lock()


def rest_for(settings: TradovateSettings) -> RestClient:
    """This process's REST client for ``settings`` (its httpx client is made on first use)."""
    key = (settings.rest_url, settings.timeout_s)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = RestClient(settings.rest_url, timeout_s=settings.timeout_s)
        return client


def tokens_for(settings: TradovateSettings, client: redis.Redis) -> Tokens:
    """This process's ``Tokens`` for the user of ``settings``, shared through ``client``."""
    key = (settings.rest_url, settings.username, id(client))
    with _shared_lock:
        tokens = _shared_tokens.get(key)
    if tokens is None:
        tokens = Tokens(settings, rest_for(settings), client)
        with _shared_lock:
            tokens = _shared_tokens.setdefault(key, tokens)
    return tokens
