"""Judging a drill against its reference: pure functions of two ``RunOutcome``.

A drill passes when, for every session of the scenario:
- no tick was lost: it processed as many good ticks and closed as many candles as the reference;
- no order was duplicated: the broker holds no more orders for it than in the reference;
- its position equals the broker's and the reference's;
- its fills (client order id, side, quantity, price, data time) are the reference's, one by one;
- every order row was sent and every order the broker holds has its row;
- every bad entry is counted by its reason (the reference's counts plus what the drill
  injected), and nothing else is;
- the run settled (every stream read, no order in flight) and its sessions caught up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.tools.drill.observe import RunOutcome

NEVER_SENT_OK = frozenset({"rejected"})
"""Row statuses that may lack a broker order: refused before it reached the broker."""


@dataclass(frozen=True, slots=True)
class DrillFigures:
    """One drill's line of the table."""

    name: str
    faults: int
    ticks_lost: int
    orders_duplicated: int
    position_mismatches: int
    fills_differing: int
    recovery_s: float
    fills: int = 0
    """Fills in the run, every session's (the reference's count shows what is compared)."""
    orders_unmatched: int = 0
    candles_differing: int = 0
    rejects_miscounted: int = 0
    """Reasons whose count differs from what the reference and the drill's injection make."""
    violations: int = 0
    """What the drill's own check found broken (two beats: a period fanned out twice)."""
    settled: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not (
            self.ticks_lost
            or self.orders_duplicated
            or self.position_mismatches
            or self.fills_differing
            or self.orders_unmatched
            or self.candles_differing
            or self.rejects_miscounted
            or self.violations
            or not self.settled
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "faults": self.faults,
            "ticks_lost": self.ticks_lost,
            "orders_duplicated": self.orders_duplicated,
            "position_mismatches": self.position_mismatches,
            "fills_differing": self.fills_differing,
            "recovery_s": round(self.recovery_s, 2),
            "fills": self.fills,
            "orders_unmatched": self.orders_unmatched,
            "candles_differing": self.candles_differing,
            "rejects_miscounted": self.rejects_miscounted,
            "violations": self.violations,
            "settled": self.settled,
            "passed": self.passed,
            "notes": list(self.notes),
        }


def unmatched_orders(run: RunOutcome) -> tuple[int, list[str]]:
    """Order rows never sent plus broker orders without a row, with a note for each."""
    count, notes = 0, []
    for label, s in run.sessions.items():
        for coid, status in s.order_rows.items():
            if coid not in s.broker_orders and status not in NEVER_SENT_OK:
                count += 1
                notes.append(f"{label}: order row {coid} ({status}) never reached the broker")
        for coid in s.broker_orders - set(s.order_rows):
            count += 1
            notes.append(f"{label}: the broker holds {coid} without an order row")
    return count, notes


@dataclass(frozen=True, slots=True)
class Injected:
    """Bad entries a drill published on purpose: what each session reading the contract must
    reject, by reason (label → reason → count), and the whole counter's increase."""

    per_session: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    total: Mapping[str, int] = field(default_factory=dict)


def judge(
    name: str,
    reference: RunOutcome,
    run: RunOutcome,
    faults: int,
    recovery_s: float | None,
    *,
    injected: Injected | None = None,
    unsettled: tuple[str, ...] = (),
    violations: tuple[str, ...] = (),
) -> DrillFigures:
    """The drill's figures: ``run`` against ``reference`` (both of the same scenario).
    ``recovery_s`` None: the sessions did not catch up; ``unsettled``: why the run did not
    settle (it is judged on what it holds all the same); ``violations``: what the drill's own
    check found broken."""
    injected = injected or Injected()
    notes: list[str] = [f"did not settle: {why}" for why in unsettled] + list(violations)
    if recovery_s is None:
        notes.append("the sessions did not catch up after the fault")
    lost = duplicated = mismatched = differing = candles = miscounted = 0
    for label, ref in reference.sessions.items():
        got = run.sessions.get(label)
        if got is None:
            notes.append(f"{label}: missing from the run")
            mismatched += 1
            continue
        if got.ticks_processed < ref.ticks_processed:
            lost += ref.ticks_processed - got.ticks_processed
            notes.append(
                f"{label}: {got.ticks_processed} ticks processed, reference {ref.ticks_processed}"
            )
        if got.candles_closed != ref.candles_closed:
            candles += abs(got.candles_closed - ref.candles_closed)
            notes.append(
                f"{label}: {got.candles_closed} candles closed, reference {ref.candles_closed}"
            )
        extra = len(got.broker_orders) - len(ref.broker_orders)
        if extra > 0:
            duplicated += extra
            notes.append(f"{label}: {extra} more order(s) at the broker than the reference")
        if got.position != got.broker_position or got.position != ref.position:
            mismatched += 1
            notes.append(
                f"{label}: position {got.position}, broker {got.broker_position}, "
                f"reference {ref.position}"
            )
        wanted = _added(ref.rejected, injected.per_session.get(label, {}))
        if dict(got.rejected) != wanted:
            miscounted += len(set(got.rejected) ^ set(wanted)) or 1
            notes.append(f"{label}: rejected {dict(got.rejected)}, expected {wanted}")
        ours, theirs = Counter(got.fills), Counter(ref.fills)
        diff = (ours - theirs) + (theirs - ours)
        if diff:
            differing += sum(diff.values())
            sample = ", ".join(f"{k[0]} {k[1]} {k[2]}@{k[3]}" for k in list(diff)[:3])
            notes.append(f"{label}: {sum(diff.values())} fill(s) differ ({sample})")
    wanted_total = _added(reference.rejected, injected.total)
    if dict(run.rejected) != wanted_total:
        miscounted += 1
        notes.append(f"rejected in all {dict(run.rejected)}, expected {wanted_total}")
    unmatched, unmatched_notes = unmatched_orders(run)
    return DrillFigures(
        name=name,
        faults=faults,
        ticks_lost=lost,
        orders_duplicated=duplicated,
        position_mismatches=mismatched,
        fills_differing=differing,
        recovery_s=-1.0 if recovery_s is None else recovery_s,
        fills=sum(len(s.fills) for s in run.sessions.values()),
        orders_unmatched=unmatched,
        candles_differing=candles,
        rejects_miscounted=miscounted,
        settled=not unsettled and recovery_s is not None,
        violations=len(violations),
        notes=tuple(notes + unmatched_notes),
    )


def _added(base: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Counts by reason, summed (zero counts left out)."""
    out = dict(base)
    for reason, n in more.items():
        out[reason] = out.get(reason, 0) + n
    return {reason: n for reason, n in out.items() if n}
