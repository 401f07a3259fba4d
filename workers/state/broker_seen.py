"""The broker's position as reconciliation last saw it, kept for the console.

Reading a live broker on every page load costs too much (and a broker that fails must not
slow a page), so the position pass (``workers.reconcile.position_check``) records the answer
it read anyway, and the console shows that record with its age ("broker 2, 12 s ago").

One hash per account, ``tf:acct:{<account>}:broker_seen`` (the account's hash tag, like its
risk hash), one field per contract, a JSON value ``{"quantity": int, "average_price": str or
null, "fills_pending": int, "as_of": ISO time}``. ``fills_pending``: fills the broker had
logged in that contract that the sessions had not been given yet when it was read (its
quantity already holds them). No expiry: the age says how old it is.

Here, below the reconciliation and the console's read models, so both use one key without
importing each other (the layers contract).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis

from trading.reconcile import BrokerPosition


def broker_seen_key(account: str) -> str:
    return f"tf:acct:{{{account}}}:broker_seen"


@dataclass(frozen=True, slots=True)
class BrokerSeen:
    """The broker's position of one account in one contract, as read at ``as_of``."""

    quantity: int
    average_price: Decimal | None
    fills_pending: int
    as_of: datetime


def record_broker_seen(
    client: redis.Redis, account: str, contract: str, answer: BrokerPosition, as_of: datetime
) -> None:
    """Keep the broker's answer for ``account`` in ``contract`` (one HSET)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be aware")
    value = {
        "quantity": answer.quantity,
        "average_price": None if answer.average_price is None else str(answer.average_price),
        "fills_pending": answer.fills_pending,
        "as_of": as_of.isoformat(),
    }
    client.hset(broker_seen_key(account), contract, json.dumps(value, separators=(",", ":")))


def decode_broker_seen(raw: bytes | str) -> BrokerSeen:
    data = json.loads(raw)
    average = data["average_price"]
    return BrokerSeen(
        quantity=int(data["quantity"]),
        average_price=None if average is None else Decimal(average),
        fills_pending=int(data.get("fills_pending", 0)),
        as_of=datetime.fromisoformat(data["as_of"]),
    )


def read_broker_seen(
    client: redis.Redis, accounts: Iterable[str]
) -> dict[tuple[str, str], BrokerSeen]:
    """Every record of these accounts, by (account, contract); one round trip."""
    names = sorted(set(accounts))
    with client.pipeline(transaction=False) as pipe:
        for account in names:
            pipe.hgetall(broker_seen_key(account))
        replies: list[Mapping[Any, Any]] = pipe.execute()
    seen: dict[tuple[str, str], BrokerSeen] = {}
    for account, fields in zip(names, replies, strict=True):
        for contract, raw in fields.items():
            name = contract.decode() if isinstance(contract, bytes) else str(contract)
            seen[(account, name)] = decode_broker_seen(raw)
    return seen


__all__ = [
    "BrokerSeen",
    "broker_seen_key",
    "decode_broker_seen",
    "read_broker_seen",
    "record_broker_seen",
]
