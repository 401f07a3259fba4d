"""Sending many tasks at once, none keeping a result (the tick path's orders, its drainers).

A task sent the usual way costs its sender about a millisecond of CPU on this class of host:
a Redis client built for the one publish, and a subscription to the task's result channel
(the result backend's, dropped again when the result object goes). The tick path never reads
the result of an order's send or of a drain task, so it sends them with ``ignore_result``
(the worker then stores no result either), and all of one round's in one Redis round trip
(kombu's producer batch: one pipeline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery

SendMany = Callable[[str, Sequence[list[Any]], str], None]
"""``send_many(name, args_of_each, queue)``: one task ``name`` per item of ``args_of_each``."""


def send_many(app: Celery, name: str, args_of_each: Sequence[list[Any]], queue: str) -> None:
    """Send one task ``name`` to ``queue`` per item of ``args_of_each``, in one batch, none
    keeping a result. A failure raises before or while flushing: what was not flushed is
    not sent (the caller's retry sends it; every task here is idempotent)."""
    if not args_of_each:
        return
    with app.producer_or_acquire() as producer, producer.batch():
        for args in args_of_each:
            app.send_task(name, args=args, queue=queue, producer=producer, ignore_result=True)


def one_by_one(send_task: Callable[..., Any]) -> SendMany:
    """A ``SendMany`` over a plain ``send_task(name, args=..., queue=...)`` (tests)."""

    def send(name: str, args_of_each: Sequence[list[Any]], queue: str) -> None:
        for args in args_of_each:
            send_task(name, args=args, queue=queue)

    return send
