"""Broker adapters (account managers): the protocol, its commands, and the registered brokers."""

from workers.brokers.base import FILLS_START, AccountManager
from workers.brokers.commands import (
    Balance,
    BrokerOrder,
    CancelOrder,
    Fill,
    OrderAck,
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
)

__all__ = [
    "FILLS_START",
    "AccountManager",
    "Balance",
    "BrokerOrder",
    "CancelOrder",
    "Fill",
    "OrderAck",
    "PlaceOrder",
    "QueryBalance",
    "QueryOpenOrders",
    "QueryOrder",
    "QueryPositions",
]
