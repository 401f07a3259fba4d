"""Reconciliation with the broker, as pure decisions over typed values (no I/O, no clock).

The broker is the truth; a session's position and open orders are working copies. Given what
the session holds, what the broker answered and the time (an argument), these functions say
what to do:

- positions (``decide_position``): in sync; correct the local quantity to the broker's; check
  again shortly (an order in flight, a fill inside the grace period, fills not yet delivered);
  or, when several sessions share the account and contract and their sum differs from the
  broker's, ambiguous: a person decides, nothing is guessed.
- a broker that failed to answer is never read as flat (``after_failure``): the session is
  marked stale, and after ``max_failures`` consecutive failures it stops entering.
- orders (``plan_orders`` then ``after_query``): filled there → apply the missed fills;
  cancelled or rejected there → close here; open there but unknown here → adopt (or flag);
  open here but absent there → one targeted query, then lost.

``ReconcileMeta`` is the reconciliation's own record in the session's state hash (the meta
field ``_reconcile``, JSON), read by the tick path to stop entries while the broker is out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

OPEN_ORDER_STATUSES: frozenset[str] = frozenset({"new", "sent", "working", "partially_filled"})
MAX_FLAGGED = 100
"""How many flagged external order ids the meta record remembers (oldest dropped)."""


# --------------------------------------------------------------------------- the meta record


@dataclass(frozen=True, slots=True)
class ReconcileMeta:
    """What reconciliation keeps per session.

    ``failures``: consecutive broker queries that failed; ``stale``: the last one failed;
    ``entries_blocked``: too many failures, the session may only exit; ``ambiguous``: the
    session shares its account and contract and the sum disagrees with the broker;
    ``checks``: position passes run; ``absorbed_cursor``: the broker's fill-log cursor at the
    last correction (every fill up to it is inside the corrected position and must never be
    applied again); ``flagged_orders``: external orders already reported.
    """

    failures: int = 0
    stale: bool = False
    last_ok: datetime | None = None
    last_error: str = ""
    entries_blocked: bool = False
    ambiguous: bool = False
    checks: int = 0
    absorbed_cursor: str = ""
    flagged_orders: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "failures": self.failures,
                "stale": self.stale,
                "last_ok": None if self.last_ok is None else self.last_ok.isoformat(),
                "last_error": self.last_error,
                "entries_blocked": self.entries_blocked,
                "ambiguous": self.ambiguous,
                "checks": self.checks,
                "absorbed_cursor": self.absorbed_cursor,
                "flagged_orders": list(self.flagged_orders),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> ReconcileMeta:
        """The record, or the initial one when absent; malformed text is ``ValueError``."""
        if not raw:
            return cls()
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"reconciliation record is not a JSON object: {raw!r}")
        last_ok = data.get("last_ok")
        parsed = None if last_ok is None else datetime.fromisoformat(str(last_ok))
        if parsed is not None and parsed.tzinfo is None:
            raise ValueError(f"reconciliation record's last_ok is naive: {last_ok!r}")
        return cls(
            failures=int(data.get("failures", 0)),
            stale=bool(data.get("stale", False)),
            last_ok=parsed,
            last_error=str(data.get("last_error", "")),
            entries_blocked=bool(data.get("entries_blocked", False)),
            ambiguous=bool(data.get("ambiguous", False)),
            checks=int(data.get("checks", 0)),
            absorbed_cursor=str(data.get("absorbed_cursor", "")),
            flagged_orders=tuple(str(x) for x in data.get("flagged_orders", ())),
        )


def entries_blocked(raw: str | bytes | None) -> bool:
    """Whether the stored record (``_reconcile`` text, or None) blocks new entries."""
    return ReconcileMeta.from_json(raw).entries_blocked if raw else False


@dataclass(frozen=True, slots=True)
class FailureStep:
    """The record after a failed broker query; ``first``: the session just became stale;
    ``blocked_now``: this failure reached the limit and entries stop from now on."""

    meta: ReconcileMeta
    first: bool
    blocked_now: bool


@dataclass(frozen=True, slots=True)
class AnswerStep:
    """The record after the broker answered; ``recovered``: it was stale before;
    ``unblocked``: entries were blocked and are allowed again."""

    meta: ReconcileMeta
    recovered: bool
    unblocked: bool


def after_failure(meta: ReconcileMeta, error: str, max_failures: int) -> FailureStep:
    """Count one more consecutive failure; never touches the position."""
    if max_failures < 1:
        raise ValueError(f"max_failures must be >= 1, got {max_failures}")
    failures = meta.failures + 1
    blocked = meta.entries_blocked or failures >= max_failures
    new = replace(
        meta,
        failures=failures,
        stale=True,
        last_error=error[:500],
        entries_blocked=blocked,
        checks=meta.checks + 1,
    )
    return FailureStep(new, first=not meta.stale, blocked_now=blocked and not meta.entries_blocked)


def after_answer(meta: ReconcileMeta, now: datetime) -> AnswerStep:
    """The broker answered: failures reset, entries allowed again."""
    new = replace(
        meta,
        failures=0,
        stale=False,
        last_ok=now,
        last_error="",
        entries_blocked=False,
        checks=meta.checks + 1,
    )
    return AnswerStep(new, recovered=meta.stale, unblocked=meta.entries_blocked)


# --------------------------------------------------------------------------- positions


@dataclass(frozen=True, slots=True)
class LocalPosition:
    """One session's side: its signed quantity in the contract, how many of its orders are
    not final (working copies and durable rows), and the wall-clock time it last applied a
    fill."""

    session_id: str
    quantity: int
    open_orders: int = 0
    last_fill_at: datetime | None = None
    rolling: bool = False


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """The broker's answer: signed quantity in the contract, its average price when it has
    one, and how many fills in the contract it logged that the sessions have not been given
    yet (or that it logged while the position was being read)."""

    quantity: int
    average_price: Decimal | None = None
    fills_pending: int = 0


@dataclass(frozen=True, slots=True)
class InSync:
    local: int


@dataclass(frozen=True, slots=True)
class CorrectTo:
    local: int
    broker: int
    average_price: Decimal | None
    reason: str


@dataclass(frozen=True, slots=True)
class RecheckLater:
    reason: str


@dataclass(frozen=True, slots=True)
class Ambiguous:
    local_total: int
    broker: int
    sessions: tuple[str, ...]
    reason: str


PositionDecision = InSync | CorrectTo | RecheckLater | Ambiguous


def _busy_reason(group: Sequence[LocalPosition], now: datetime, grace: timedelta) -> str | None:
    for item in group:
        if item.rolling:
            return f"session {item.session_id} is rolling"
        if item.open_orders:
            return f"session {item.session_id} has {item.open_orders} order(s) in flight"
        if item.last_fill_at is not None and now - item.last_fill_at < grace:
            return f"session {item.session_id} applied a fill within the grace period"
    return None


def decide_position(
    session_id: str,
    group: Sequence[LocalPosition],
    broker: BrokerPosition,
    now: datetime,
    grace: timedelta,
) -> PositionDecision:
    """What to do with ``session_id``'s position.

    ``group``: every active session on the same account and contract (the session itself
    included). Their SUM is compared with the broker's. Equal: in sync. Different while
    anything is in flight (an order, a fill inside ``grace``, undelivered fills, a roll):
    check again later. Different and settled: one session → correct it to the broker's;
    several → ambiguous (the broker cannot say which session holds what).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    mine = [item for item in group if item.session_id == session_id]
    if len(mine) != 1:
        raise ValueError(f"session {session_id} must appear once in its group")
    total = sum(item.quantity for item in group)
    if total == broker.quantity:
        return InSync(mine[0].quantity)
    busy = _busy_reason(group, now, grace)
    if busy is not None:
        return RecheckLater(busy)
    if broker.fills_pending:
        return RecheckLater(f"{broker.fills_pending} broker fill(s) not delivered yet")
    if len(group) > 1:
        ids = tuple(sorted(item.session_id for item in group))
        return Ambiguous(
            total,
            broker.quantity,
            ids,
            f"{len(group)} sessions share the account and contract; they hold {total} "
            f"together, the broker {broker.quantity}",
        )
    return CorrectTo(
        mine[0].quantity,
        broker.quantity,
        broker.average_price,
        f"the broker holds {broker.quantity}, the session {mine[0].quantity}, "
        "with no order in flight and no recent fill",
    )


def corrected_average(
    local_quantity: int,
    local_average: Decimal | None,
    broker_quantity: int,
    broker_average: Decimal | None,
    mark: Decimal | None,
) -> Decimal | None:
    """The average price to keep after a correction: the broker's when it has one; else the
    local one when the side did not change; else the latest market price (``mark``)."""
    if broker_quantity == 0:
        return None
    if broker_average is not None:
        return broker_average
    same_side = local_quantity != 0 and (local_quantity > 0) == (broker_quantity > 0)
    if same_side and local_average is not None:
        return local_average
    return mark


# --------------------------------------------------------------------------- orders

BrokerOrderStatus = Literal["working", "filled", "cancelled", "rejected", "unknown"]


@dataclass(frozen=True, slots=True)
class LocalOrder:
    """An order the session holds open (a working copy or a durable row not yet final);
    ``created_at`` is the wall-clock time its durable row was written."""

    client_order_id: str
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BrokerOrderState:
    client_order_id: str
    status: BrokerOrderStatus
    session_id: str
    contract: str


@dataclass(frozen=True, slots=True)
class OrderInSync:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class ApplyFills:
    """Filled at the broker, open here: apply the fills the session missed."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class CloseOrder:
    """Cancelled or rejected at the broker, open here: close it here."""

    client_order_id: str
    status: Literal["cancelled", "rejected"]


@dataclass(frozen=True, slots=True)
class QueryBroker:
    """Open here, absent from the broker's open orders: ask for it by client order id."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class MarkLost:
    """Open here, and the broker has no such order: mark it lost."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class AdoptOrder:
    """Open at the broker, unknown here: take it into the session as an external order."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class FlagOrder:
    """Open at the broker, unknown here, not adopted: report it (once)."""

    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class WaitOrder:
    """Too young to judge (its send may still be on its way): look again next pass."""

    client_order_id: str


OrderAction = (
    OrderInSync
    | ApplyFills
    | CloseOrder
    | QueryBroker
    | MarkLost
    | AdoptOrder
    | FlagOrder
    | WaitOrder
)


def plan_orders(
    session_id: str,
    contract: str,
    local: Sequence[LocalOrder],
    broker_open: Sequence[BrokerOrderState],
    *,
    now: datetime,
    grace: timedelta,
    adopt: bool,
    sole_owner: bool,
    flagged: Collection[str] = (),
) -> list[OrderAction]:
    """The first pass over one session's orders against the broker's open orders of the
    account.

    A broker order belongs to the session when it names it, or names no session, is in the
    session's contract and the session is the only active one on that account and contract
    (``sole_owner``); an order naming no session while several share is flagged, never
    adopted. Orders of other sessions are theirs to reconcile.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    actions: list[OrderAction] = []
    open_ids = {order.client_order_id for order in broker_open}
    known = {order.client_order_id for order in local}
    for order in local:
        coid = order.client_order_id
        if coid in open_ids:
            actions.append(OrderInSync(coid))
        elif now - order.created_at < grace:
            actions.append(WaitOrder(coid))
        else:
            actions.append(QueryBroker(coid))
    for theirs in broker_open:
        coid = theirs.client_order_id
        if coid in known or theirs.status != "working":
            continue
        if theirs.session_id == session_id:
            owned, why = True, "names this session"
        elif theirs.session_id == "" and theirs.contract == contract:
            owned, why = sole_owner, "names no session"
        else:
            continue
        if owned and adopt:
            actions.append(AdoptOrder(coid))
        elif coid not in flagged:
            reason = (
                f"external order {why}; adoption is switched off"
                if owned
                else "external order names no session and several sessions share the "
                "account and contract"
            )
            actions.append(FlagOrder(coid, reason))
    return actions


def after_query(order: LocalOrder, answer: BrokerOrderState | None) -> OrderAction:
    """The decision for an order absent from the broker's open orders, once it was asked
    for by its client order id. An order the broker does not know is lost only once the
    broker has answered its send: a row still ``new`` may have its send queued behind others,
    on its way, or lost with a dead host, and the send path (or beat's send sweep) places it;
    marking it lost would drop a decided order that is about to reach the broker (whose fill
    would then arrive for an order the session had given up)."""
    if answer is None or answer.status == "unknown":
        if order.status == "new":
            return WaitOrder(order.client_order_id)
        return MarkLost(order.client_order_id)
    if answer.status == "filled":
        return ApplyFills(order.client_order_id)
    if answer.status in ("cancelled", "rejected"):
        status: Literal["cancelled", "rejected"] = (
            "cancelled" if answer.status == "cancelled" else "rejected"
        )
        return CloseOrder(order.client_order_id, status)
    return OrderInSync(order.client_order_id)


def remember_flagged(meta: ReconcileMeta, ids: Sequence[str]) -> ReconcileMeta:
    """``meta`` with ``ids`` added to the flagged external orders (bounded, newest kept)."""
    merged = [*meta.flagged_orders, *(i for i in ids if i not in meta.flagged_orders)]
    return replace(meta, flagged_orders=tuple(merged[-MAX_FLAGGED:]))
