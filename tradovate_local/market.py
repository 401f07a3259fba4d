"""Where ticks come from: pushed through ``POST /_local/market/ticks``, or tailed from
tradefleet's instrument streams in Redis (``--market-redis``).

Pushed ticks: ``[{symbol, time (ISO-8601 with zone), price, size, bid?, ask?}]``, numbers as
strings; ``symbol`` is Tradovate's (``ESZ3``) or tradefleet's (``ESZ13``).
Streams: ``md:{<tradefleet symbol>}:ticks``, fields ``t`` (epoch ms), ``p``, ``s``, ``b``, ``a``
(``b``/``a`` may be empty or absent), read with XREAD by a thread that hands each batch to the
IOLoop (``add_callback``), so the book is only ever touched on the IOLoop's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import redis

from tradovate_local.contracts import Catalog, Contract
from tradovate_local.marketdata import Tick

log = logging.getLogger("tradovate_local.market")

Batch = list[tuple[Contract, Tick]]


class BadTicks(ValueError):
    pass


def _decimal(name: str, value: object, optional: bool = False) -> Decimal | None:
    if value is None or value == "":
        if optional:
            return None
        raise BadTicks(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise BadTicks(f"{name} must be a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise BadTicks(f"{name} is not a decimal: {value!r}") from exc
    if not number.is_finite():
        raise BadTicks(f"{name} must be finite")
    return number


def parse_pushed(catalog: Catalog, body: object) -> Batch:
    if not isinstance(body, list):
        raise BadTicks("the body must be a JSON list of ticks")
    batch: Batch = []
    for i, item in enumerate(body):
        if not isinstance(item, dict):
            raise BadTicks(f"tick {i} is not an object")
        contract = catalog.by_symbol(item.get("symbol"))
        if contract is None:
            raise BadTicks(f"tick {i}: unknown symbol {item.get('symbol')!r}")
        raw_time = item.get("time")
        if not isinstance(raw_time, str):
            raise BadTicks(f"tick {i}: time must be an ISO-8601 string")
        try:
            moment = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadTicks(f"tick {i}: bad time {raw_time!r}") from exc
        if moment.tzinfo is None:
            raise BadTicks(f"tick {i}: time needs a zone")
        price = _decimal("price", item.get("price"))
        size = _decimal("size", item.get("size", "0"))
        assert price is not None and size is not None
        batch.append(
            (
                contract,
                Tick(
                    moment.astimezone(UTC),
                    price,
                    size,
                    _decimal("bid", item.get("bid"), optional=True),
                    _decimal("ask", item.get("ask"), optional=True),
                ),
            )
        )
    return batch


def decode_entry(contract: Contract, fields: dict[bytes, bytes]) -> Tick:
    """One stream entry (``t``, ``p``, ``s``, ``b``, ``a``) as a tick."""

    def text(name: bytes) -> str | None:
        raw = fields.get(name)
        return None if raw is None else raw.decode()

    millis = int(text(b"t") or "0")
    price = _decimal("p", text(b"p"))
    size = _decimal("s", text(b"s") or "0")
    assert price is not None and size is not None
    return Tick(
        datetime.fromtimestamp(millis / 1000, UTC),
        price,
        size,
        _decimal("b", text(b"b"), optional=True),
        _decimal("a", text(b"a"), optional=True),
    )


class RedisTail:
    """A daemon thread that XREADs every listed contract's stream and hands batches on."""

    def __init__(
        self,
        url: str,
        catalog: Catalog,
        deliver: Callable[[Batch], None],
        start: str = "0",
    ) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=10)
        self._catalog = catalog
        self._deliver = deliver
        self._stop = threading.Event()
        self._keys = {f"md:{{{c.tradefleet_symbol}}}:ticks": c for c in catalog.contracts}
        self._last: dict[Any, Any] = dict.fromkeys(self._keys, start)
        self._thread = threading.Thread(target=self._run, name="redis-tail", daemon=True)

    def start(self) -> None:
        """Start tailing. ``$`` (new entries only) is fixed here, before the thread runs, as
        each stream's last id (``0-0`` for a stream not there yet): XREAD's ``$`` means "after
        the last entry at THIS call", so one kept across calls would miss whatever a stream
        got between two of them."""
        for key, last in self._last.items():
            if last == "$":
                newest: Any = self._client.xrevrange(key, count=1)
                self._last[key] = newest[0][0] if newest else "0-0"
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer: Any = self._client.xread(self._last, count=5000, block=500)
            except redis.RedisError as exc:
                log.warning("market redis: %s; retrying in 1 s", type(exc).__name__)
                self._stop.wait(1)
                continue
            batch: Batch = []
            for key, entries in answer or []:
                name = key.decode() if isinstance(key, bytes) else key
                contract = self._keys[name]
                for entry_id, fields in entries:
                    self._last[name] = entry_id
                    try:
                        batch.append((contract, decode_entry(contract, fields)))
                    except (BadTicks, ValueError) as exc:
                        log.warning("market redis: skipped a bad entry of %s: %s", name, exc)
            if batch:
                batch.sort(key=lambda item: item[1].time)
                self._deliver(batch)
