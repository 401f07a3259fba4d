"""Snapshots of a tick-path run, and how two runs are compared.

A snapshot holds what every part kept for one session: its Redis state and ``_progress``, its
SQL orders, fills and events, and the paper broker's positions and orders for its account.
Ids differ between runs (session ids are random), so runs are compared through
``SessionSnapshot.comparable()``: client order ids become ``<signal seq>-<leg>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from models.progress import TickProgress
from models.state import OpenPosition, SessionState
from models.tables import OrderRow
from trading.intents import client_order_id

CONTRACT = "ESZ13"


@dataclass(frozen=True, slots=True)
class OrderView:
    """An SQL order row, its client id reduced to ``<signal seq>-<leg>``."""

    key: str
    side: str
    quantity: int
    order_type: str
    intent: str
    status: str
    decided_at: datetime | None
    stop_price: Decimal | None


@dataclass(frozen=True, slots=True)
class FillView:
    key: str
    quantity: int
    price: Decimal
    commission: Decimal
    filled_at: datetime


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """Everything one session's run left behind, across Redis, SQL and the broker."""

    name: str
    session_id: str
    account: str
    state: SessionState
    progress: TickProgress
    cursor: str
    orders: tuple[OrderView, ...]
    fills: tuple[FillView, ...]
    events: tuple[tuple[str, str, str], ...]
    broker_positions: dict[str, int]
    broker_orders: tuple[str, ...]
    broker_seq: int

    @property
    def position(self) -> int:
        held = self.state.open_position
        return 0 if held is None else held.quantity

    def comparable(self) -> dict[str, Any]:
        """What must be identical between two runs of the same replay (ids reduced).

        Left out: ``account_pnl_info.unrealized`` (a mark-to-market working copy, valued at
        whatever step last ran before the last fill arrived), wall-clock times, and whether a
        stop that ended cancelled reached the broker first (``placed_orders``).
        """
        state = self.state
        pnl = state.account_pnl_info
        position = state.open_position or OpenPosition(contract=CONTRACT)
        return {
            "progress": self.progress,
            "cursor": self.cursor,
            "trading": state.trading,
            "candles": state.candles,
            "partial": state.latest_partial_candle,
            "strategy_state": state.strategy.state,
            "position": position,
            "realized": pnl.realized,
            "commissions": pnl.commissions,
            "pnl_as_of": pnl.as_of,
            "balance": state.account_balance,
            "working_orders": {self.reduce(k): v.status for k, v in state.orders.items()},
            "trades": tuple(
                (self.reduce(t.client_order_id), t.quantity, t.price, t.commission, t.time)
                for t in state.trades
            ),
            "realized_by_trade": tuple(t.realized_pnl for t in state.trades),
            "orders": self.orders,
            "fills": self.fills,
            "events": self.events,
            "broker_positions": self.broker_positions,
            "broker_orders": self.placed_orders(),
        }

    def placed_orders(self) -> tuple[str, ...]:
        """The orders the broker holds, but protective stops that ended cancelled: a stop
        replaced (by a move, an exit, a fill's sync) before its own send ran never reaches the
        broker, and after it, reaches it and is cancelled as of the same data time; which of
        the two happens is the workers' timing, not the replay's (each run still sends every
        id at most once: ``assert_consistent`` checks the broker's order counter)."""
        cancelled = {o.key for o in self.orders if is_stop_key(o.key) and o.status == "cancelled"}
        return tuple(k for k in map(self.reduce, self.broker_orders) if k not in cancelled)

    def reduce(self, coid: str) -> str:
        return reduce_coid(self.session_id, coid)


@dataclass(frozen=True, slots=True)
class RunResult:
    published: int
    last_id: str
    sessions: dict[str, SessionSnapshot]

    def comparable(self) -> dict[str, dict[str, Any]]:
        return {name: snap.comparable() for name, snap in self.sessions.items()}


def order_view(key: str, row: OrderRow) -> OrderView:
    return OrderView(
        key=key,
        side=row.side,
        quantity=row.quantity,
        order_type=row.order_type,
        intent=row.intent,
        status=row.status,
        decided_at=row.decided_at,
        stop_price=row.stop_price,
    )


def reduce_coid(session_id: str, coid: str) -> str:
    """``<hash of session id>-<seq>-<leg>`` → ``<seq>-<leg>`` (checking the hash)."""
    prefix = client_order_id(session_id, 0, 0).rsplit("-", 2)[0]
    head, _, rest = coid.partition("-")
    if head != prefix:
        raise AssertionError(f"client order id {coid} is not one of session {session_id}")
    return rest


STOP_KEYS = ("stop-", "move-")


def is_stop_key(key: str) -> bool:
    """Whether ``key`` (``reduce_coid``) names a protective stop: attached, placed on its own,
    or a move."""
    return key.startswith(STOP_KEYS)


def seq_leg(key: str) -> tuple[int, ...]:
    """``<seq>-<leg>`` → (seq, leg); a stop attached to an entry ``stop-<seq>-<leg>`` →
    (seq, leg, 1), right after its entry; a stop move ``move-<seq>`` → (seq, 0); a stop placed
    on its own ``stop-<n>`` → (-1, n)."""
    parts = key.split("-")
    if parts[0] == "move":
        return int(parts[1]), 0
    if parts[0] != "stop":
        return int(parts[0]), int(parts[1])
    if len(parts) == 3:
        return int(parts[1]), int(parts[2]), 1
    return -1, int(parts[1])


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def assert_consistent(result: RunResult) -> None:
    """Within one run: every tick accounted for, the broker agrees with every session."""
    for name, snap in result.sessions.items():
        progress = snap.progress
        assert progress.ticks_processed + progress.ticks_rejected == result.published, name
        assert snap.cursor == result.last_id, name
        assert snap.broker_positions == (
            {snap.state.contract_details.symbol: snap.position} if snap.position else {}
        ), name
        at_broker = set(map(snap.reduce, snap.broker_orders))
        assert at_broker <= {o.key for o in snap.orders}, name
        assert snap.broker_seq == len(at_broker), name
        for order in snap.orders:
            assert order.status in _ENDS[_kind(order, at_broker)], (name, order)
        filled = {o.key for o in snap.orders if o.status == "filled"}
        assert {f.key for f in snap.fills} == filled, name
        assert resting_stop_fits(snap), name
        assert progress.stop_out == 0, name
        assert len(snap.state.trades) == len(snap.fills), name
        assert sum(t.quantity for t in snap.state.trades) == snap.position, name


_ENDS = {
    "order": {"filled"},
    "dropped": {"cancelled"},
    "stop": {"filled", "cancelled", "working"},
}


def _kind(order: OrderView, at_broker: set[str]) -> str:
    """A protective stop; an exit dropped before reaching the broker (its stop had closed the
    position); any other order (it must have filled)."""
    if is_stop_key(order.key):
        return "stop"
    return "order" if order.key in at_broker or order.intent != "exit" else "dropped"


def needed_stop(held: OpenPosition | None) -> list[tuple[str, int, Decimal]]:
    """The protective stop a position needs, as (side, quantity, stop price): none when flat
    or opened without a stop."""
    if held is None or held.quantity == 0 or held.stop_price is None:
        return []
    return [("sell" if held.quantity > 0 else "buy", abs(held.quantity), held.stop_price)]


def resting_stop_fits(snap: SessionSnapshot) -> bool:
    """At most one protective stop still works, and only the one the position needs (a run
    with protective stops off has none at all)."""
    if not any(is_stop_key(o.key) for o in snap.orders):
        return True
    resting = [o for o in snap.orders if is_stop_key(o.key) and o.status == "working"]
    return [(o.side, o.quantity, o.stop_price) for o in resting] == needed_stop(
        snap.state.open_position
    )


def differences(got: RunResult, want: RunResult, limit: int = 3) -> list[str]:
    """Where ``got`` differs from ``want``, for every session of ``got`` (``want`` may hold
    more): per session and comparable key, the first differing items."""
    out: list[str] = []
    mine, theirs = got.comparable(), want.comparable()
    for name in sorted(mine):
        a, b = mine[name], theirs.get(name, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key):
                continue
            left, right = a.get(key), b.get(key)
            if isinstance(left, tuple) and isinstance(right, tuple):
                pairs = [
                    (i, x, y) for i, (x, y) in enumerate(zip(left, right, strict=False)) if x != y
                ]
                detail = f"lengths {len(left)} vs {len(right)}; first diffs {pairs[:limit]}"
            else:
                detail = f"{left!r} vs {right!r}"
            out.append(f"{name}.{key}: {detail}"[:2_000])
    return out


def dump(result: RunResult) -> str:
    """A short JSON summary of a run, for assertion messages."""
    summary = {
        name: {
            "progress": json.loads(snap.progress.to_json()),
            "orders": len(snap.orders),
            "fills": len(snap.fills),
            "position": snap.position,
            "realized": str(snap.state.account_pnl_info.realized),
        }
        for name, snap in result.sessions.items()
    }
    return json.dumps(summary, indent=1, sort_keys=True)
