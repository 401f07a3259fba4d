"""The relay's schedule alone, without devices: what it drops and when it sends."""

from __future__ import annotations

import random

from workers.tools.drill.impair import Direction


def test_a_direction_drops_about_its_loss_and_delays_within_the_jitter() -> None:
    direction = Direction(rng=random.Random(7), delay_s=0.020, jitter_s=0.010, loss=0.1)
    sent = []
    for i in range(20_000):
        now = i * 0.1  # far apart: FIFO order never stretches a delay
        due = direction.due(now)
        if due is not None:
            sent.append(due - now)
    assert 0.09 < direction.dropped / 20_000 < 0.11
    assert min(sent) >= 0.010 - 1e-9
    assert max(sent) <= 0.030 + 1e-9
    assert 0.019 < sorted(sent)[len(sent) // 2] < 0.021


def test_a_direction_keeps_packet_order_and_never_a_negative_delay() -> None:
    direction = Direction(rng=random.Random(1), delay_s=0.001, jitter_s=0.005, loss=0.0)
    dues = [direction.due(i * 0.0001) for i in range(1_000)]
    assert all(due is not None for due in dues)
    times = [due for due in dues if due is not None]
    assert times == sorted(times)
    assert all(due >= i * 0.0001 for i, due in enumerate(times))
