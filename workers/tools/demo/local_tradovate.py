"""The demo's broker ``tradovate-local``: the local Tradovate server (``tradovate_local``) as a
child process, and the environment that points the fleet's Tradovate adapter at it.

The server's user, password, app id/secret and control token are throwaway secrets made here
(``secrets``); they reach the server and the fleet's children through their environment only,
never a command line or a log line. The server's market is the sessions' instrument streams
from now on (``--market-redis <sessions' Redis> --market-redis-from $``): the orders the
sessions send are worked against the prints the demo publishes. One server account per demo
session.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from trading.exceptions import ServiceUnavailable
from workers.settings import Settings, TradovateSettings
from workers.tools.processes import ChildProcesses

SERVER = "tradovate-local"
LISTENER = "tradovate-listener"
READY = "tradovate-local listening on "
START_TIMEOUT_S = 20.0
APP_ID = "tradefleet-demo"
STARTING_CASH = Decimal("100000")
"""Each account's cash at the server: the paper broker's default starting cash."""
COMMISSION = Decimal("2.50")
"""Per contract, as the paper broker's default."""


@dataclass(frozen=True, slots=True)
class LocalTradovate:
    """The running server: its base URL and its control token (never shown)."""

    url: str
    control_token: str = field(repr=False)

    @property
    def rest_url(self) -> str:
        return self.url + "/v1"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/v1/websocket"

    @property
    def md_ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/md/v1/websocket"

    def state(self) -> dict[str, Any]:
        """The server's whole truth (``GET /_local/state``): accounts, orders, fills,
        positions, cash."""
        try:
            answer = httpx.get(
                self.url + "/_local/state",
                headers={"X-Local-Control": self.control_token},
                timeout=10.0,
            )
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the local Tradovate server did not answer its state ({type(exc).__name__})"
            ) from None
        raw = answer.content
        state: dict[str, Any] = json.loads(raw, parse_float=Decimal)
        return state


@dataclass(frozen=True, slots=True)
class _Credentials:
    user: str
    password: str = field(repr=False)
    cid: str
    sec: str = field(repr=False)
    control_token: str = field(repr=False)

    @classmethod
    def throwaway(cls) -> _Credentials:
        return cls(
            user=f"demo-{secrets.token_hex(4)}",
            password=secrets.token_urlsafe(24),
            cid=str(1 + secrets.randbelow(999_999)),
            sec=secrets.token_urlsafe(32),
            control_token=secrets.token_urlsafe(32),
        )


def start_local_tradovate(
    children: ChildProcesses, settings: Settings, accounts: Iterable[str]
) -> tuple[LocalTradovate, Settings]:
    """Start the server (one account per name in ``accounts``) and point every child started
    from now on at it (``children.env``: ``TRADEFLEET_TRADOVATE_*``); the demo's own settings
    with the same Tradovate group are returned."""
    creds = _Credentials.throwaway()
    argv = [
        sys.executable,
        "-m",
        "tradovate_local",
        "--port",
        "0",
        "--market-redis",
        settings.redis.url,
        "--market-redis-from",
        "$",
        "--commission",
        str(COMMISSION),
    ]
    for account in accounts:
        argv += ["--account", f"{account}:{STARTING_CASH}"]
    log = children.log_dir / f"{SERVER}.log"
    offset = log.stat().st_size if log.exists() else 0
    process = children.start(
        SERVER,
        argv,
        env={
            "TRADOVATE_LOCAL_USER": creds.user,
            "TRADOVATE_LOCAL_PASSWORD": creds.password,
            "TRADOVATE_LOCAL_CID": creds.cid,
            "TRADOVATE_LOCAL_SEC": creds.sec,
            "TRADOVATE_LOCAL_CONTROL_TOKEN": creds.control_token,
        },
    )
    url = _ready_url(log, offset, lambda: process.poll() is not None)
    server = LocalTradovate(url, creds.control_token)
    env = {
        "TRADEFLEET_TRADOVATE_ENVIRONMENT": "demo",
        "TRADEFLEET_TRADOVATE_REST_URL": server.rest_url,
        "TRADEFLEET_TRADOVATE_WS_URL": server.ws_url,
        "TRADEFLEET_TRADOVATE_MD_WS_URL": server.md_ws_url,
        "TRADEFLEET_TRADOVATE_USERNAME": creds.user,
        "TRADEFLEET_TRADOVATE_PASSWORD": creds.password,
        "TRADEFLEET_TRADOVATE_APP_ID": APP_ID,
        "TRADEFLEET_TRADOVATE_CID": creds.cid,
        "TRADEFLEET_TRADOVATE_SEC": creds.sec,
    }
    children.env = {**children.env, **env}
    tradovate = TradovateSettings.model_validate(
        {
            "environment": "demo",
            "rest_url": server.rest_url,
            "ws_url": server.ws_url,
            "md_ws_url": server.md_ws_url,
            "username": creds.user,
            "password": creds.password,
            "app_id": APP_ID,
            "cid": int(creds.cid),
            "sec": creds.sec,
        }
    )
    return server, settings.model_copy(update={"tradovate": tradovate})


def start_listener(children: ChildProcesses, accounts: Iterable[str]) -> None:
    """The user-sync listener (``tradefleet broker listen --broker tradovate``) for every
    demo account; its credentials come from ``children.env``."""
    argv = [sys.executable, "-m", "workers.cli.main", "broker", "listen", "--broker", "tradovate"]
    for account in accounts:
        argv += ["--account", account]
    children.start(LISTENER, argv)


def _ready_url(log: Path, offset: int, exited: Any) -> str:
    """The URL of the server's one ready line, written to ``log`` past ``offset``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if log.exists():
            with log.open("rb") as handle:
                handle.seek(offset)
                for raw in handle.read().decode(errors="replace").splitlines():
                    if raw.startswith(READY):
                        return raw[len(READY) :].strip()
        if exited():
            break
        time.sleep(0.05)
    raise ServiceUnavailable(f"the local Tradovate server did not start; its log: {log}")
