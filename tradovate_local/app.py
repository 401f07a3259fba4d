"""The server: its state (book, tokens, faults, the user) and its sockets, wired into one
tornado application. Everything runs on the IOLoop's thread; the Redis tailer hands its ticks
over with ``add_callback``, so concurrent requests see one consistent book.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import tornado.web

from tradovate_local.auth import Tokens, User
from tradovate_local.contracts import Catalog
from tradovate_local.control import FaultsHandler, StateHandler, TicksHandler
from tradovate_local.faults import Faults
from tradovate_local.market import Batch
from tradovate_local.rest import RestHandler
from tradovate_local.sockets import MarketSocket, Socket, UserSocket
from tradovate_local.state import Book, Event


@dataclass(frozen=True)
class Config:
    control_token: str
    accounts: tuple[tuple[str, Decimal], ...] = (("DEMO0001", Decimal("100000")),)
    token_minutes: float = 90
    commission: Decimal = Decimal("2.50")
    heartbeat_seconds: float = 2.5
    client_timeout: float = 10.0

    def __repr__(self) -> str:  # never show the control token
        return f"Config(accounts={self.accounts!r}, token_minutes={self.token_minutes})"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Server:
    def __init__(self, config: Config, user: User, now: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.user = user
        self.now = now
        self.catalog = Catalog(now().date())
        self.book = Book(self.catalog, config.commission)
        self.tokens = Tokens(timedelta(minutes=config.token_minutes))
        self.faults = Faults()
        self.sockets: set[Socket] = set()
        self.requests: Counter[str] = Counter()
        """REST requests seen per path (lower case), answered or refused (429, 401, 503)."""
        for name, cash in config.accounts:
            self.book.add_account(name, user.id, cash, now())

    # --- pushing --------------------------------------------------------------------------

    def publish(self, events: list[Event]) -> None:
        """Push ``events`` as ``props`` to every synced user socket
        (https://partner.tradovate.com/overview/core-concepts/web-sockets/user-syncrequest:
        ``{"e": "props", "d": {"entityType", "eventType", "entity"}}``)."""
        if not events:
            return
        messages = [
            {"e": "props", "d": {"entityType": kind, "eventType": change, "entity": entity}}
            for kind, change, entity in events
        ]
        if self.faults.reorder_props:
            messages.reverse()
        if self.faults.duplicate_props:
            messages = [m for message in messages for m in (message, message)]
        for socket in list(self.sockets):
            if isinstance(socket, UserSocket) and socket.user_id == self.user.id:
                socket.push_props(messages)

    def apply_ticks(self, batch: Batch) -> None:
        for contract, tick in batch:
            events = self.book.tick(contract, tick)
            self.publish(events)
            market = self.book.market(contract.id)
            quote = market.quote()
            bar = market.bars[-1]
            for socket in list(self.sockets):
                if isinstance(socket, MarketSocket):
                    socket.on_tick(contract.id, quote, bar)

    def drop_sockets(self) -> None:
        for socket in list(self.sockets):
            socket.close(1001, "local fault: drop_sockets")
        self.sockets.clear()

    def clear_faults(self) -> None:
        self.faults = Faults()

    # --- reading --------------------------------------------------------------------------

    def sync_snapshot(self) -> dict[str, Any]:
        """The ``user/syncrequest`` answer (SyncMessage:
        https://partner.tradovate.com/api/rest-api-endpoints/users/sync-request). assumed:
        "fillFees" is included too; the lists the local server does not model are empty."""
        book = self.book
        contract_ids = {o.contract.id for o in book.orders.values()} | {
            p.contract.id for p in book.positions.values()
        }
        contracts = [c for c in self.catalog.contracts if c.id in contract_ids]
        products = {c.product.id: c.product for c in contracts}
        return {
            "users": [self.user.entity()],
            "accounts": [a.entity() for a in book.accounts.values()],
            "accountRiskStatuses": [],
            "marginSnapshots": [],
            "userAccountAutoLiqs": [],
            "cashBalances": [a.cash_entity() for a in book.accounts.values()],
            "currencies": [{"id": 1, "name": "USD", "symbol": "$"}],
            "positions": book.position_list(),
            "fillPairs": [],
            "orders": [o.entity() for o in book.orders.values()],
            "contracts": [c.entity() for c in contracts],
            "contractMaturities": [c.maturity_entity() for c in contracts],
            "products": [p.entity() for p in products.values()],
            "exchanges": [{"id": 1, "name": "CME"}],
            "spreadDefinitions": [],
            "commands": [c.entity() for c in book.commands.values()],
            "commandReports": [],
            "executionReports": [],
            "orderVersions": [v for o in book.orders.values() for v in book.order_versions(o)],
            "fills": [f.entity() for f in book.fills.values()],
            "fillFees": [f.fee_entity() for f in book.fills.values()],
            "orderStrategies": [],
            "orderStrategyLinks": [],
            "contractGroups": [],
        }

    def state_view(self) -> dict[str, Any]:
        book = self.book
        return {
            "now": self.now(),
            "user": self.user.entity(),
            "accounts": [
                {**a.entity(), "cash": a.cash_entity(), "snapshot": book.cash_snapshot(a.id)}
                for a in book.accounts.values()
            ],
            "orders": [
                {
                    **o.entity(),
                    "versions": book.order_versions(o),
                    "filledQty": o.filled,
                    "neverWorks": o.never_works,
                }
                for o in book.orders.values()
            ],
            "commands": [c.entity() for c in book.commands.values()],
            "fills": [f.entity() for f in book.fills.values()],
            "fillFees": [f.fee_entity() for f in book.fills.values()],
            "positions": book.position_list(),
            "markets": {
                str(contract_id): market.quote() for contract_id, market in book.markets.items()
            },
            "faults": self.faults.view(),
            "sockets": len(self.sockets),
            "requests": dict(self.requests),
        }


def make_app(server: Server) -> tornado.web.Application:
    args = {"server": server}
    return tornado.web.Application(
        [
            (r"/v1/websocket", UserSocket, args),
            (r"/md/v1/websocket", MarketSocket, args),
            (r"/v1/(.+)", RestHandler, args),
            (r"/_local/market/ticks", TicksHandler, args),
            (r"/_local/faults", FaultsHandler, args),
            (r"/_local/state", StateHandler, args),
        ],
        websocket_ping_interval=None,
    )
