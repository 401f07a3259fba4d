"""Brokers by registered name (``"paper"``), built from typed settings and the session's args.

A session's ``account_manager`` reference is ``{module: <registered name>, args: {...}}``; the
name is only ever looked up in this table, never imported as a path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

import redis

from trading.exceptions import BadInput, UnknownRegisteredName
from workers.brokers.base import AccountManager
from workers.brokers.paper.broker import PaperBroker, PaperConfig
from workers.brokers.tradovate.broker import TradovateBroker, tradovate_broker
from workers.connections import redis_client
from workers.settings import Settings

BrokerBuilder = Callable[[Mapping[str, Any], Settings], AccountManager]

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    """One client (connection pool) per URL per process, made on first use."""
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis_client(url)
        return client


def _decimal_arg(name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise BadInput(f"paper broker arg {name} must be a decimal string, got {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise BadInput(f"paper broker arg {name} is not a number: {value!r}") from None


def paper_config(args: Mapping[str, Any]) -> PaperConfig:
    """``PaperConfig`` from JSON args: ``commission_per_contract`` and ``starting_cash`` as
    decimal strings, ``slippage_ticks`` as an int; absent args keep their defaults. ``account``
    (the session's account, sent with every command) is allowed and must be a string."""
    known = {"account", "commission_per_contract", "slippage_ticks", "starting_cash"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise BadInput(f"unknown paper broker args {unknown} (known: {sorted(known)})")
    if not isinstance(args.get("account", ""), str):
        raise BadInput(f"paper broker arg account must be a string, got {args['account']!r}")
    values: dict[str, Any] = {}
    for name in ("commission_per_contract", "starting_cash"):
        if name in args:
            values[name] = _decimal_arg(name, args[name])
    if "slippage_ticks" in args:
        ticks = args["slippage_ticks"]
        if isinstance(ticks, bool) or not isinstance(ticks, int):
            raise BadInput(f"paper broker arg slippage_ticks must be an int, got {ticks!r}")
        values["slippage_ticks"] = ticks
    return PaperConfig(**values)


def build_paper(args: Mapping[str, Any], settings: Settings) -> PaperBroker:
    """The paper broker on ``settings.redis.paper_broker_url``, reading prices from the
    sessions' Redis (``settings.redis.url``)."""
    if settings.redis.paper_broker_url == settings.redis.url:
        raise BadInput(
            "TRADEFLEET_PAPER_BROKER_URL must not be the sessions' Redis (TRADEFLEET_REDIS_URL): "
            "the broker's truth must survive losing the sessions' state"
        )
    config = paper_config(args)
    return PaperBroker(
        _client(settings.redis.paper_broker_url), _client(settings.redis.url), config
    )


def build_tradovate(args: Mapping[str, Any], settings: Settings) -> TradovateBroker:
    """The Tradovate broker of ``args["account"]`` (the Tradovate account name, the session's
    account); credentials only from ``settings.tradovate``; tokens and place claims in the
    sessions' Redis. Live is refused unless TRADEFLEET_TRADOVATE_ALLOW_LIVE is set."""
    unknown = sorted(set(args) - {"account"})
    if unknown:
        raise BadInput(f"unknown tradovate broker args {unknown} (known: ['account'])")
    account = args.get("account")
    if not isinstance(account, str) or not account:
        raise BadInput(f"tradovate broker arg account must be a non-empty string, got {account!r}")
    return tradovate_broker(settings.tradovate, _client(settings.redis.url), account)


BROKERS: Mapping[str, BrokerBuilder] = MappingProxyType(
    {"paper": build_paper, "tradovate": build_tradovate}
)
"""Every registered broker, by name."""


def broker_names() -> list[str]:
    """Every registered broker name, sorted."""
    return sorted(BROKERS)


def build_broker(name: str, args: Mapping[str, Any] | None, settings: Settings) -> AccountManager:
    """The broker registered as ``name``; an unknown name is ``UnknownRegisteredName``."""
    builder = BROKERS.get(name) if isinstance(name, str) else None
    if builder is None:
        raise UnknownRegisteredName("broker", str(name), list(BROKERS))
    return builder(args or {}, settings)
