"""Which stream entries the paper broker may fill an order on: the ticks the sessions accept."""

from __future__ import annotations

from decimal import Decimal

import pytest

from workers.brokers.paper.model import eligible_tick

T = 1_381_152_600_000


def fields(
    t: int | str = T, p: str = "1676.25", s: str = "3", b: str = "", a: str = ""
) -> dict[str, str]:
    return {"t": str(t), "p": p, "s": s, "b": b, "a": a}


def test_a_good_tick_at_or_after_the_decision_is_eligible() -> None:
    tick = eligible_tick("ESZ13", f"{T}-0", fields(b="1676.00", a="1676.50"), T)
    assert tick is not None
    assert (tick.price, tick.size, tick.bid, tick.ask) == (
        Decimal("1676.25"),
        3,
        Decimal("1676.00"),
        Decimal("1676.50"),
    )
    assert eligible_tick("ESZ13", f"{T}-0", fields(), T + 1) is None


@pytest.mark.parametrize(
    "bad",
    [
        fields(p="NaN"),
        fields(p="-1676.25"),
        fields(s="-1"),
        fields(s=str(10**12)),
        fields(b="NaN"),
        fields(a="0"),
        fields(t="abc"),
        fields(t=10**17),
    ],
    ids=["nan", "negative", "negative-size", "huge-size", "nan-bid", "zero-ask", "time", "far"],
)
def test_what_the_sessions_reject_fills_nothing_and_raises_nothing(bad: dict[str, str]) -> None:
    """A huge size was eligible (a fill at a print no session folded), and a time past the
    calendar raised OverflowError out of the fill scan."""
    assert eligible_tick("ESZ13", f"{T}-0", bad, T) is None


def test_a_tick_earlier_than_its_stream_id_fills_nothing() -> None:
    assert eligible_tick("ESZ13", f"{T + 1}-0", fields(), T) is None
