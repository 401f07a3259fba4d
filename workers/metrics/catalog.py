"""Every metric the workers count in Redis: its name, kind, help text and label values.

The writers (``workers.metrics.counters``) refuse a label value outside its fixed set, so no
series is ever keyed by an order id or anything else unbounded; ``/metrics`` reports every
allowed label value, at zero until counted, so ``rate()`` works from the first scrape.
Per-session figures are not counted here: they are gauges read at scrape time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from trading.candles import REJECT_REASONS

Kind = Literal["counter", "histogram", "gauge"]
KEY_PREFIX: Final = "tf:metric:"
"""A metric's Redis hash is ``tf:metric:<name>``: one field per label tuple (a histogram's
fields are per bucket, sum and count)."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric kept in Redis.

    ``name`` is the exposed name (a counter's without ``_total``, which the exposition adds).
    ``labels`` name the labels, ``values`` the allowed values of each (a fixed set).
    A histogram's ``buckets`` are upper bounds in the base unit; its observations are whole
    ``1 / scale`` units (milliseconds for seconds with ``scale`` 1000), so every stored figure
    is an integer and ``HINCRBY`` keeps it exact.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    values: tuple[tuple[str, ...], ...] = ()
    buckets: tuple[float, ...] = ()
    scale: int = 1

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    @property
    def scaled_buckets(self) -> tuple[int, ...]:
        """The bucket bounds in stored units."""
        return tuple(round(bound * self.scale) for bound in self.buckets)


ORDER_OUTCOMES: Final = (
    "created",
    "external",
    "working",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "lost",
)
"""What an order row reached: ``created`` (the fleet wrote it, before sending), ``external``
(reconciliation adopted an order found only at the broker), then each status the row moved
to (``working``: the broker acknowledged it and it rests there). Counted once per row and
status, where the SQL row changes, so the final ones add up to the rows in that status."""

CORRECTION_KINDS: Final = (
    "position",
    "missed_fills",
    "order_cancelled",
    "order_rejected",
    "order_lost",
    "order_adopted",
    "order_flagged",
    "stop_placed",
    "stop_cancelled",
)
"""What a reconciliation pass changed: a position set to the broker's, fills the session had
missed applied, an open order found cancelled or rejected at the broker, unknown there (lost),
an external one adopted or only flagged, a missing protective stop placed again, a stop no
position needs cancelled."""

RECONCILE_CHECKS: Final = ("positions", "orders")
ROLL_RESULTS: Final = ("done", "failed", "needs_operator", "aborted")

TICK_LAG_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

TICKS_PROCESSED = Metric(
    "tradefleet_ticks_processed",
    "counter",
    "Ticks applied to sessions (each tick once per session reading its instrument), counted "
    "when the step's fenced state write is accepted.",
)
TICKS_REJECTED = Metric(
    "tradefleet_ticks_rejected",
    "counter",
    "Stream entries rejected as bad ticks, by reason: by a session's step (malformed, out "
    "of order, unusable price or size; once per session reading the entry, when the step's "
    "state write is accepted), or by the publisher (duplicate: an entry its feed sent again, "
    "not appended; unknown_instrument: appended to a stream no session reads; once per entry).",
    ("reason",),
    (REJECT_REASONS,),
)
TICK_LAG = Metric(
    "tradefleet_tick_lag_seconds",
    "histogram",
    "Per stream entry a step consumed: the wall time the step processed it minus the time "
    "of its stream id (milliseconds since the epoch; the publisher stamps an entry with its "
    "tick's data time, so on a live feed this is exchange print to decision, and a replay "
    "of history shows the history's age).",
    buckets=TICK_LAG_BUCKETS,
    scale=1000,
)
CANDLES_CLOSED = Metric(
    "tradefleet_candles_closed",
    "counter",
    "Candles closed by the tick path, over every session.",
)
ORDERS = Metric(
    "tradefleet_orders",
    "counter",
    "Order rows by what they reached: created (written by the fleet before sending), "
    "external (adopted from the broker), then each status the row moved to; once per row "
    "and status.",
    ("outcome",),
    (ORDER_OUTCOMES,),
)
FILLS = Metric(
    "tradefleet_fills",
    "counter",
    "Fills recorded, once per broker execution id (the rows of the fills table).",
)
RECONCILE_CORRECTIONS = Metric(
    "tradefleet_reconcile_corrections",
    "counter",
    "What reconciliation changed to match the broker, by kind.",
    ("kind",),
    (CORRECTION_KINDS,),
)
RECONCILE_LAST_SUCCESS = Metric(
    "tradefleet_reconcile_last_success_timestamp_seconds",
    "gauge",
    "When a reconciliation pass of this check last got the broker's answer for a session "
    "(seconds since the epoch).",
    ("check",),
    (RECONCILE_CHECKS,),
)
ROLLS = Metric(
    "tradefleet_rolls",
    "counter",
    "Contract rolls by result: done, failed (a step failed for good), needs_operator, "
    "aborted by the operator; once per roll reaching the result.",
    ("result",),
    (ROLL_RESULTS,),
)

METRICS: Final = (
    TICKS_PROCESSED,
    TICKS_REJECTED,
    TICK_LAG,
    CANDLES_CLOSED,
    ORDERS,
    FILLS,
    RECONCILE_CORRECTIONS,
    RECONCILE_LAST_SUCCESS,
    ROLLS,
)
"""Every metric kept in Redis, in the order ``/metrics`` shows them."""
