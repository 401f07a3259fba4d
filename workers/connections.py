"""Connections made on demand (never at import time), with one clear line when a service is down."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

from trading.exceptions import ServiceUnavailable
from workers.settings import Settings

REDIS_FIX = (
    "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
    '--save "" --appendonly no'
)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def redis_client(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A client for ``url``; bytes in and out, bounded socket timeouts."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
    )


def require_redis(settings: Settings) -> redis.Redis:
    """The sessions' Redis, checked with a PING; raises ``ServiceUnavailable`` with the fix."""
    client = redis_client(settings.redis.url, timeout_s=2.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise ServiceUnavailable(
            f"Redis is not answering at {redact_url(settings.redis.url)} "
            f"({type(exc).__name__}); {REDIS_FIX}"
        ) from None
    return client
