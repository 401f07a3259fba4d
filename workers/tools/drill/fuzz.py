"""A fuzzed feed: what a faulty market-data feed publishes, and what the fleet must count.

``fuzz_feed(ticks, seed)`` takes a real replay's stream entries per instrument (``RawTick``,
as ``workers.ticks.publisher.encode_tick`` makes them) and answers a ``FuzzPlan``: the batches
to publish in order, ``(instrument, FeedBatch)``, each with the numbering the feed sends it
under (``FeedSeq``), and the counts the fleet must end with. The real entries keep their order;
bad ones are interleaved. The same seed gives the same plan. A drill publishes it with
``FuzzPlan.publish(publisher)`` (or batch by batch: ``publisher.publish_raw(instrument,
batch.rows, batch.at)``) and must find every session's fills, positions and candles equal to
an undisturbed run of the same entries, and each bad entry counted by its reason:

- ``unparseable`` (malformed rows: a non-numeric or empty time, price or size, a malformed
  bid; a time Redis would read as a number but the sessions cannot, such as ``1.5e12``):
  rejected by every session reading the stream, never folded; its time never becomes a stream
  id's (the publisher takes only whole milliseconds).
- ``bad_price`` (NaN, Infinity, negative or zero price; a NaN or negative bid or ask):
  rejected by every session reading the stream; the paper broker fills nothing at it.
- ``bad_size`` (negative, or above ``trading.candles.MAX_TICK_SIZE`` such as 10**12):
  rejected; a huge print is a feed fault, and folded it would swell the candle's volume.
- ``time_backwards`` (a good tick earlier than the one before it): rejected, never folded out
  of order; its stream id takes the time of the entry before it.
- ``unknown_instrument`` (valid ticks of an instrument no session reads, ``UNKNOWN``): appended
  to that instrument's own stream and counted once per entry by the publisher; it makes no
  session ready, starts no drain task and creates nothing else.
- ``duplicate`` (a batch sent again with the numbering it was first sent with, as a feed does
  after a lost reply; whole, or its tail sent again ahead of the next batch): skipped by the
  publisher, counted once per entry; no session ever reads it.

Bad entries carry the time of the real tick they precede (a backwards one an earlier time) and
a price near it, so a rule that let one through would show in the candles or the fills.

``FuzzPlan.per_reader`` holds, per instrument, the rejections each session reading it must
count in its ``_progress`` (``rejected``); ``at_publish`` the publisher's counts;
``rejected_total(readers)`` what ``tradefleet_ticks_rejected_total`` must then hold by reason.
The plan names its feed ``source`` (``fuzz-<seed>`` unless given): a stream must not hold
that name's count from an earlier publish, or the plan's first batches are refused as
duplicates (give each run a source of its own on a Redis that is not emptied).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from trading.candles import (
    BAD_PRICE,
    BAD_SIZE,
    DUPLICATE,
    MAX_TICK_SIZE,
    TIME_BACKWARDS,
    UNKNOWN_INSTRUMENT,
    UNPARSEABLE,
)
from workers.ticks.publisher import FeedSeq, PublishResult, RawTick, TickPublisher

UNKNOWN = "ZZZ99"
"""The instrument of the unknown-instrument batches (no session trades it)."""
SESSION_REASONS = (UNPARSEABLE, BAD_PRICE, BAD_SIZE, TIME_BACKWARDS)
"""Rejected by each session reading the stream."""
PUBLISH_REASONS = (DUPLICATE, UNKNOWN_INSTRUMENT)
"""Counted once per entry by the publisher."""


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """One publish: its entries and the feed's numbering of the first."""

    rows: tuple[RawTick, ...]
    at: FeedSeq


@dataclass(frozen=True, slots=True)
class FuzzPlan:
    """What the faulty feed publishes, in order, and the counts it must leave."""

    source: str
    batches: tuple[tuple[str, FeedBatch], ...]
    per_reader: dict[str, dict[str, int]]
    """Instrument → reason → entries each session reading it rejects."""
    at_publish: dict[str, int]
    """Reason (``duplicate``, ``unknown_instrument``) → entries the publisher counts."""

    @property
    def faults(self) -> int:
        """Bad entries injected (each once, whoever reads it)."""
        return sum(sum(r.values()) for r in self.per_reader.values()) + sum(
            self.at_publish.values()
        )

    def rejected_total(self, readers: Mapping[str, int]) -> dict[str, int]:
        """``tradefleet_ticks_rejected_total`` by reason once everything is read, given how many
        sessions read each instrument (reasons counted zero left out)."""
        total = {reason: n for reason, n in self.at_publish.items() if n}
        for instrument, reasons in self.per_reader.items():
            for reason, n in reasons.items():
                if n and readers.get(instrument, 0):
                    total[reason] = total.get(reason, 0) + n * readers[instrument]
        return total

    def publish(self, publisher: TickPublisher) -> list[PublishResult]:
        """Publish every batch in order (one script call each)."""
        return [
            publisher.publish_raw(instrument, batch.rows, batch.at)
            for instrument, batch in self.batches
        ]


def fuzz_feed(
    ticks: Mapping[str, Sequence[RawTick]],
    seed: int,
    *,
    batch: int = 200,
    rate: float = 0.01,
    source: str | None = None,
) -> FuzzPlan:
    """The fuzzed publish plan of ``ticks`` (instrument → its real entries in order): about
    ``rate`` bad entries per real one (each session reason at least twice per instrument that
    has entries), batches of ``batch // 2`` to ``batch`` entries, one batch in six or so sent
    again (whole or its tail), and unknown-instrument batches between them."""
    if UNKNOWN in ticks:
        raise ValueError(f"{UNKNOWN} is the unknown instrument of the fuzz; it has no replay")
    rng = random.Random(seed)  # noqa: S311 - a reproducible fuzz, not security
    name = source or f"fuzz-{seed}"
    per_reader: dict[str, dict[str, int]] = {}
    at_publish = dict.fromkeys(PUBLISH_REASONS, 0)
    queues: list[list[tuple[str, FeedBatch]]] = []
    for instrument in sorted(ticks):
        rows, counts = _interleave(rng, list(ticks[instrument]), rate)
        per_reader[instrument] = counts
        queue, dups = _batches(rng, instrument, rows, name, batch)
        at_publish[DUPLICATE] += dups
        queues.append(queue)
    unknown = _unknown_batches(rng, ticks, name, batch)
    at_publish[UNKNOWN_INSTRUMENT] = sum(len(b.rows) for _, b in unknown)
    queues.append(unknown)
    return FuzzPlan(name, tuple(_merge(rng, queues)), per_reader, at_publish)


def _interleave(
    rng: random.Random, rows: list[RawTick], rate: float
) -> tuple[list[RawTick], dict[str, int]]:
    """The real rows with bad ones inserted before some of them (never before the first: a
    backwards time needs a tick before it), and the count per reason."""
    counts = dict.fromkeys(SESSION_REASONS, 0)
    if len(rows) < 2:
        return rows, counts
    wanted = max(2 * len(SESSION_REASONS), round(len(rows) * rate))
    reasons = [SESSION_REASONS[k % len(SESSION_REASONS)] for k in range(wanted)]
    rng.shuffle(reasons)
    places = sorted(rng.choices(range(1, len(rows)), k=wanted))
    out: list[RawTick] = []
    at = 0
    for place, reason in zip(places, reasons, strict=True):
        out.extend(rows[at:place])
        at = place
        out.append(_BAD[reason](rng, rows[place - 1], rows[place]))
        counts[reason] += 1
    out.extend(rows[at:])
    return out, counts


def _near(rng: random.Random, price: str) -> str:
    """A price a few tenths of a percent from ``price``, in its own precision."""
    p = Decimal(price)
    step = (p * Decimal(rng.choice((-3, -2, -1, 1, 2, 3)))).scaleb(-3)
    return str((p + step).quantize(p))


def _unparseable(rng: random.Random, before: RawTick, tick: RawTick) -> RawTick:
    t, p, s, b, a = tick
    shapes: tuple[RawTick, ...] = (
        ("abc", p, s, b, a),
        ("", p, s, b, a),
        ("1.5e12", _near(rng, p), s, b, a),
        (t, "", s, b, a),
        (t, "1676.25.5", s, b, a),
        (t, "12x", s, b, a),
        (t, _near(rng, p), "", b, a),
        (t, _near(rng, p), "1.5", b, a),
        (t, _near(rng, p), s, "bid", a),
    )
    return rng.choice(shapes)


def _bad_price(rng: random.Random, before: RawTick, tick: RawTick) -> RawTick:
    t, p, s, _, _ = tick
    shapes: tuple[RawTick, ...] = (
        (t, "NaN", s, "", ""),
        (t, "Infinity", s, "", ""),
        (t, "-Infinity", s, "", ""),
        (t, "sNaN", s, "", ""),
        (t, "-" + p, s, "", ""),
        (t, "0", s, "", ""),
        (t, _near(rng, p), s, "NaN", ""),
        (t, _near(rng, p), s, "", "-" + p),
    )
    return rng.choice(shapes)


def _bad_size(rng: random.Random, before: RawTick, tick: RawTick) -> RawTick:
    t, p, _, b, a = tick
    size = rng.choice(("-1", "-250", str(10**12), str(MAX_TICK_SIZE + 1)))
    return (t, _near(rng, p), size, b, a)


def _time_backwards(rng: random.Random, before: RawTick, tick: RawTick) -> RawTick:
    t, p, s, b, a = before
    return (str(int(t) - rng.randint(1, 120_000)), _near(rng, p), s, b, a)


_BAD: dict[str, Callable[[random.Random, RawTick, RawTick], RawTick]] = {
    UNPARSEABLE: _unparseable,
    BAD_PRICE: _bad_price,
    BAD_SIZE: _bad_size,
    TIME_BACKWARDS: _time_backwards,
}


def _batches(
    rng: random.Random, instrument: str, rows: list[RawTick], source: str, size: int
) -> tuple[list[tuple[str, FeedBatch]], int]:
    """``rows`` cut into numbered batches, some sent again (whole, or their tail ahead of the
    next batch: a feed resending what it is unsure of); and the entries sent again."""
    out: list[tuple[str, FeedBatch]] = []
    first = dups = 0
    cuts: list[tuple[int, int]] = []
    while first < len(rows):
        n = min(len(rows) - first, rng.randint(max(1, size // 2), max(1, size)))
        cuts.append((first, n))
        first += n
    resent = {rng.randrange(len(cuts)), rng.randrange(len(cuts))} if cuts else set()
    resent |= {k for k in range(len(cuts)) if rng.random() < 1 / 6}
    tails = {k for k in resent if k + 1 < len(cuts) and rng.random() < 0.5}
    for k, (first, n) in enumerate(cuts):
        start = first
        if k - 1 in tails:
            start = first - rng.randint(1, cuts[k - 1][1])
            dups += first - start
        out.append((instrument, FeedBatch(tuple(rows[start : first + n]), FeedSeq(source, start))))
        if k in resent and k not in tails:
            out.append(out[-1])
            dups += len(out[-1][1].rows)
    return out, dups


def _unknown_batches(
    rng: random.Random, ticks: Mapping[str, Sequence[RawTick]], source: str, size: int
) -> list[tuple[str, FeedBatch]]:
    """Two or three batches of valid ticks (copied from the replay) under ``UNKNOWN``."""
    pool = [row for rows in ticks.values() for row in rows]
    out: list[tuple[str, FeedBatch]] = []
    first = 0
    for _ in range(rng.randint(2, 3) if pool else 0):
        n = rng.randint(1, max(1, min(size, len(pool))))
        start = rng.randrange(len(pool) - n + 1)
        out.append((UNKNOWN, FeedBatch(tuple(pool[start : start + n]), FeedSeq(source, first))))
        first += n
    return out


def _merge(
    rng: random.Random, queues: list[list[tuple[str, FeedBatch]]]
) -> list[tuple[str, FeedBatch]]:
    """The queues' batches interleaved at random, each queue's in its own order."""
    heads = [0] * len(queues)
    out: list[tuple[str, FeedBatch]] = []
    while True:
        left = [q for q in range(len(queues)) if heads[q] < len(queues[q])]
        if not left:
            return out
        q = rng.choice(left)
        out.append(queues[q][heads[q]])
        heads[q] += 1
