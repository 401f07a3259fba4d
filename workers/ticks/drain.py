"""Draining ready sessions: claim a few, run each one's step under its fenced lock, repeat.

Per session: one script takes the lease and fencing token and reads the state hash and the new
ticks; ``SessionStep`` folds them (no I/O); orders it decides are written to SQL and queued for
sending; one script writes the state and cursor (refused if the fence is stale), releases the
lock and marks the session ready again if ticks remain. Work is proportional to the new ticks.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy.engine import Engine

from models.codec import candles_key, decode_candle, encode_candle, fence_key, lock_key, state_key
from models.codec import trades_key as trades_list_key
from trading.market import Candle
from workers.order_records import insert_order_if_absent
from workers.records import record_event
from workers.settings import Settings
from workers.state import scripts as store_scripts
from workers.ticks import scripts
from workers.ticks.keys import DRAINERS_KEY, READY_KEY, stream_key
from workers.ticks.step import CURSOR_FIELD, NewOrder, SessionStep, StepResult

log = logging.getLogger(__name__)

SEND_ORDER_TASK = "tradefleet.orders.send"
_STALE = -2
_UNKNOWN = -1
BUSY_RETRY_MS = 20
ERROR_RETRY_MS = 1_000
RETRY_HORIZON_MS = 2 * ERROR_RETRY_MS
"""A drain task stays while a session is put back for a retry due within this horizon."""


@dataclass(frozen=True, slots=True)
class DrainReport:
    sessions: int
    ticks: int
    finished: bool


class TickDrainer:
    """The tick path inside one worker process (its clients are made once per process)."""

    def __init__(
        self,
        client: redis.Redis,
        engine: Engine,
        settings: Settings,
        send_task: Callable[..., Any],
    ) -> None:
        self.client = client
        self.engine = engine
        self.settings = settings
        self._send_task = send_task
        self._begin = client.register_script(scripts.BEGIN_SESSION)
        self._end = client.register_script(
            scripts.end_session_script(store_scripts.WRITE_BODY, store_scripts.HELPERS)
        )
        self._claim = client.register_script(scripts.CLAIM)
        self._alive = client.register_script(scripts.DRAIN_ALIVE)
        self._done = client.register_script(scripts.DRAIN_DONE)
        self._unlock = client.register_script(store_scripts.RELEASE)

    def drain(self, drainer_id: str, budget_s: float) -> DrainReport:
        """Serve ready sessions until none is due (finished) or the time budget is spent."""
        settings = self.settings
        deadline = time.monotonic() + budget_s
        sessions = ticks = 0
        while time.monotonic() < deadline:
            now = _now_ms()
            self._alive(keys=[DRAINERS_KEY], args=[drainer_id, now + settings.drainer_grace_ms])
            claimed = self._claim(
                keys=[READY_KEY], args=[now, settings.lock_ttl_ms, settings.claim_batch]
            )
            if not claimed:
                done_args: list[str | int] = [_now_ms(), drainer_id, RETRY_HORIZON_MS]
                if self._done(keys=[READY_KEY, DRAINERS_KEY], args=done_args):
                    return DrainReport(sessions, ticks, finished=True)
                time.sleep(0.002)
                continue
            for raw in claimed:
                sessions += 1
                ticks += self._process_guarded(_text(raw))
        return DrainReport(sessions, ticks, finished=False)

    def _process_guarded(self, session_id: str) -> int:
        """A failure in one session's step is logged and retried later; others go on."""
        try:
            return self.process(session_id)
        except Exception:
            log.exception(
                "session %s: tick step failed; retrying in %s ms", session_id, ERROR_RETRY_MS
            )
            self.client.zadd(READY_KEY, {session_id: _now_ms() + ERROR_RETRY_MS}, xx=True)
            return 0

    def process(self, session_id: str) -> int:
        """One step of one session; returns the number of entries it consumed."""
        token = secrets.token_hex(16)
        reply = self._begin(
            keys=[lock_key(session_id), fence_key(session_id), state_key(session_id), READY_KEY],
            args=[token, self.settings.lock_ttl_ms, self.settings.tick_batch, session_id],
        )
        status = int(reply[0])
        if status == _UNKNOWN:
            log.warning("session %s has no state; dropped from the ready set", session_id)
            return 0
        if status == 0:
            self.client.zadd(READY_KEY, {session_id: _now_ms() + BUSY_RETRY_MS}, xx=True)
            return 0
        fence = int(reply[1])
        flat = reply[2]
        fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        entries = [(entry_id, _pairs(values)) for entry_id, values in reply[3]]
        try:
            step = SessionStep(session_id, fields, self._history(session_id)).run(entries)
            cursor = step.cursor or fields.get(CURSOR_FIELD, "0-0")
            self._record_orders(step.new_orders)
        except BaseException:
            self._release(session_id, token)
            raise
        written = self._write(session_id, token, fence, step, cursor, fields)
        if written and step.events:
            self._record_events(session_id, step)
        return len(entries)

    def _release(self, session_id: str, token: str) -> None:
        self._unlock(keys=[lock_key(session_id)], args=[token])

    def _history(self, session_id: str) -> Callable[[int], list[Candle]]:
        key = candles_key(session_id)

        def read(count: int) -> list[Candle]:
            raws: list[bytes] = self.client.lrange(key, -count, -1)  # type: ignore[assignment]
            return [decode_candle(raw) for raw in raws]

        return read

    def _record_orders(self, orders: Sequence[NewOrder]) -> None:
        """The order row is written before the order is sent; then the send is queued.

        A retry decides the same orders with the same client ids: the row is found, the send
        is queued again, and the broker refuses the duplicate id.
        """
        for new in orders:
            insert_order_if_absent(
                self.engine, new.session_id, new.order, new.decided_at, new.time_in_force
            )
            self._send_task(
                SEND_ORDER_TASK,
                args=[new.session_id, new.order.client_order_id],
                queue=self.settings.queue_orders,
            )

    def _write(
        self,
        session_id: str,
        token: str,
        fence: int,
        step: StepResult,
        cursor: str,
        fields: dict[str, str],
    ) -> bool:
        updates = dict(step.fields)
        updates[CURSOR_FIELD] = cursor
        candles = [encode_candle(c) for c in step.candles]
        args: list[str | int] = [
            token,
            fence,
            "1",
            "0",
            self.settings.max_candles,
            1000,
            len(updates),
        ]
        for name, value in updates.items():
            args += [name, value]
        args += [len(candles), *candles, 0, cursor, session_id, _now_ms()]
        instrument = _instrument(fields)
        keys = [
            state_key(session_id),
            candles_key(session_id),
            trades_list_key(session_id),
            fence_key(session_id),
            lock_key(session_id),
            stream_key(instrument),
            READY_KEY,
        ]
        status = int(self._end(keys=keys, args=args))
        if status == _STALE:
            log.warning("session %s: fence %s is stale; this step was discarded", session_id, fence)
            return False
        if status == _UNKNOWN:
            log.warning("session %s disappeared during its step", session_id)
            return False
        return True

    def _record_events(self, session_id: str, step: StepResult) -> None:
        for event in step.events:
            record_event(
                self.engine,
                session_id,
                event.kind,
                event.severity,
                event.message,
                event.details,
            )


def _instrument(fields: dict[str, str]) -> str:
    candle_key: str = json.loads(fields["candle_key"])
    return candle_key.split(":", 1)[0]


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
