"""From a wanted position to order intents, each classified as an entry or an exit.

Exits reduce the absolute position and are never blocked (by portfolio heat or anything else);
entries increase it and may be refused. A reversal (crossing zero) is therefore two intents:
the exit of the whole current position first, then the entry of the whole target, so that a
refused entry still leaves the session flat rather than stuck on the wrong side.

Client order ids are derived from the session and the signal's sequence number, so a retried
task sends the same id and the broker refuses the duplicate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
IntentKind = Literal["entry", "exit"]
FillKind = Literal["entry", "exit", "reversal"]


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """One order to send: ``leg`` numbers the intents of one signal from 0.

    ``stop_price`` is the protective stop of the position an entry opens; exits carry None.
    """

    side: Side
    quantity: int
    intent: IntentKind
    stop_price: Decimal | None
    reason: str
    leg: int

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        if self.intent not in ("entry", "exit"):
            raise ValueError(f"intent must be 'entry' or 'exit', got {self.intent!r}")
        if type(self.quantity) is not int or self.quantity <= 0:
            raise ValueError(f"quantity must be a positive int, got {self.quantity!r}")
        if type(self.leg) is not int or self.leg < 0:
            raise ValueError(f"leg must be an int >= 0, got {self.leg!r}")

    @property
    def signed_quantity(self) -> int:
        """The quantity as a position change: positive bought, negative sold."""
        return self.quantity if self.side == "buy" else -self.quantity


def _side(change: int) -> Side:
    return "buy" if change > 0 else "sell"


def intents_for(
    current: int, target: int, stop_price: Decimal | None, reason: str
) -> list[OrderIntent]:
    """The intents that move the position from ``current`` to ``target`` (signed contracts).

    Toward zero is an exit; away from zero on the same side is an entry; across zero is an
    exit of ``|current|`` then an entry of ``|target|``; no change is no intent.
    """
    if current == target:
        return []
    if current != 0 and target != 0 and (current > 0) != (target > 0):
        return [
            OrderIntent(_side(-current), abs(current), "exit", None, reason, leg=0),
            OrderIntent(_side(target), abs(target), "entry", stop_price, reason, leg=1),
        ]
    change = target - current
    if abs(target) < abs(current):
        return [OrderIntent(_side(change), abs(change), "exit", None, reason, leg=0)]
    return [OrderIntent(_side(change), abs(change), "entry", stop_price, reason, leg=0)]


def client_order_id(session_id: str, signal_seq: int, leg: int) -> str:
    """The deterministic client order id of one leg of one signal of one session.

    ``<16 hex of blake2b(session id)>-<seq>-<leg>``: only ``[0-9a-f-]``, at most ~40 chars,
    the same after any retry, and distinct across sessions (hash of the full id), sequences
    and legs.
    """
    if not session_id:
        raise ValueError("session id must not be empty")
    if type(signal_seq) is not int or signal_seq < 0:
        raise ValueError(f"signal sequence must be an int >= 0, got {signal_seq!r}")
    if type(leg) is not int or leg < 0:
        raise ValueError(f"leg must be an int >= 0, got {leg!r}")
    digest = hashlib.blake2b(
        session_id.encode("utf-8"), digest_size=8, person=b"tradefleet-coid"
    ).hexdigest()
    return f"{digest}-{signal_seq}-{leg}"


def classify_fill(position_before: int, fill_qty_signed: int) -> FillKind:
    """Whether a fill (signed: positive bought) opened, reduced, or reversed the position."""
    if fill_qty_signed == 0:
        raise ValueError("a fill has a non-zero quantity")
    after = position_before + fill_qty_signed
    if position_before != 0 and after != 0 and (position_before > 0) != (after > 0):
        return "reversal"
    return "entry" if abs(after) > abs(position_before) else "exit"
