"""Draining ready sessions: claim a few, run each one's step under its fenced lock, repeat.

Per session: one script takes the lease and fencing token and reads the new ticks (a backlog's
are read with a plain XRANGE, in one more round trip for the round's such sessions), and a plain
HMGET behind it (same round trip, under that lease) the state fields every step needs;
``SessionStep`` folds them (no I/O; the rest of the state and the candle history, when a step
needs them, are read for the whole round at once); one script per session writes the state
and cursor (refused if the fence is stale), releases the lock and marks the session ready
again if ticks remain. The steps that decided orders or events are written last: their rows
go to SQL first, in one transaction (``round_rows``), and their orders are queued for sending
(``tradefleet.orders.send_batch`` tasks of up to ``orders.send_batch`` orders each);
the round's other steps are written before that, without waiting for it. Work is proportional
to the new ticks.

What the written steps counted (ticks processed and rejected, candles closed, the tick lag,
order rows written) is gathered in a ``workers.metrics.ticks.TickTally`` and goes to Redis as
one command in the drainer's next claim (a batch it sends anyway), or when it stops.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy.engine import Engine

from models.codec import candles_key, fence_key, lock_key, lock_wanted_key, state_key
from models.meta import CURSOR_FIELD
from trading.market import Candle
from workers.dispatch import names
from workers.dispatch.recovery import request_recovery
from workers.dispatch.sending import SendMany, one_by_one
from workers.metrics.counters import ADD
from workers.metrics.ticks import TickTally, stream_times
from workers.risk.book import RiskBook
from workers.risk.equity import broker_equity
from workers.risk.feed_stall import feed_stalled
from workers.settings import Settings, get_diagnostics
from workers.state import scripts as store_scripts
from workers.ticks import scripts
from workers.ticks.keys import (
    AWAKE_KEY,
    BACKLOG_KEY,
    DRAINERS_KEY,
    READY_KEY,
    SLEEPERS_KEY,
    WAKE_KEY,
)
from workers.ticks.latency_probe import LatencyProbe
from workers.ticks.lazy_fields import BEGIN_FIELDS, LazyFields, RoundHistory, RoundLoader
from workers.ticks.pipelines import Batch
from workers.ticks.round_rows import save_round_snapshots, write_decisions
from workers.ticks.round_step import RoundStep
from workers.ticks.snapshots import StrategySnapshot, snapshot_of
from workers.ticks.step import SessionStep

log = logging.getLogger(__name__)
_History = Callable[[int], list[Candle]]
"""A step's reader of its last candles (``RoundHistory``)."""
_Begun = tuple[str, "_Keys", int, LazyFields, Sequence[Any] | None, str, _History]
"""A step begun: session id, keys, fence, state fields, new entries (None: left to a plain
read), stream, candle reader."""
_Read = tuple[str, "_Keys", int, LazyFields, Sequence[Any], str, _History]
"""A step begun with its new entries read."""

_STALE = -2
_UNKNOWN = -1
BUSY_RETRY_MS = 20
ERROR_RETRY_MS = 1_000
RETRY_HORIZON_MS = 2 * ERROR_RETRY_MS
"""A drain task stays while a session is put back for a retry due within this horizon."""
IDLE_LINGER_S = 0.2
"""A drain task with nothing to claim waits this long for work before it stops: under a steady
flow of ticks drain tasks stay up instead of being restarted (through the broker) for every
tick. It waits blocked on the wake list (``WAKE_KEY``), not polling: an idle fleet sleeps. Not
longer: a waiting drain task holds a worker process, which a worker serving ``orders`` too
needs (the demo's single worker of two processes starved its orders with a 1 s linger)."""
AWAKE_MS = 200
"""A drainer counts as awake (in a round: it claims at the round's end what became ready
meanwhile, so a publish wakes no sleeper for it) this long after its last claim; a round
longer than that lets a publish wake a sleeper to help."""
WAIT_MIN_S = 0.001
"""Redis's resolution of a blocking wait (a timeout of 0 would wait for ever)."""
BACKLOG_STEP_TICKS = 16
"""A round whose steps read this many ticks each on average or more is a backlog's: it sets
the backlog key for ``BACKLOG_MARK_MS``, and meanwhile every claim takes only its share of the
due sessions, so the drainers work through the backlog together (``scripts.CLAIM``)."""
BACKLOG_MARK_MS = 100
BACKLOG_WAIT_MS = 50
"""A due session that has waited this long is a backlog's too: claims then take their share
only (a backlog found by its first round, e.g. when the fleet comes back after an outage)."""
_KEYS_KEPT = 100_000
"""Sessions whose key names a drainer keeps (the cache is emptied when full)."""
INLINE_ENTRIES = 16
"""A step's new ticks come back with its begin script when fewer than this; more (a backlog)
are read with a plain ``XRANGE`` in one more round trip for the round's such steps
(``scripts.BEGIN_SESSION``: entries passing through a script cost Redis about five times
more)."""


@dataclass(frozen=True, slots=True)
class DrainReport:
    sessions: int
    ticks: int
    finished: bool


@dataclass(frozen=True, slots=True)
class _Keys:
    """The keys of one session the tick path touches."""

    lock: str
    fence: str
    state: str
    candles: str
    wanted: str


class TickDrainer:
    """The tick path inside one worker process (its clients are made once per process)."""

    def __init__(
        self,
        client: redis.Redis,
        engine: Engine,
        settings: Settings,
        send_task: Callable[..., Any],
        send_many: SendMany | None = None,
    ) -> None:
        """``send_task``: Celery's, for a recovery request; ``send_many``: the round's order
        sends (``workers.dispatch.sending``; one by one through ``send_task`` if None)."""
        self.client = client
        self.engine = engine
        self.settings = settings
        self._send_task = send_task
        self._send_many = send_many if send_many is not None else one_by_one(send_task)
        self._begin = client.register_script(scripts.BEGIN_SESSION)
        self._end = client.register_script(scripts.END_SESSION)
        self._claim = client.register_script(scripts.CLAIM)
        self._done = client.register_script(scripts.DRAIN_DONE)
        self._sleep = client.register_script(scripts.SLEEP)
        self._unlock = client.register_script(store_scripts.RELEASE)
        self._hold_again = client.register_script(scripts.HOLD_AGAIN)
        self._add = client.register_script(ADD)
        self._scripts = (self._begin, self._end, self._claim, self._add, self._hold_again)
        self._latency = LatencyProbe()
        self._tally = TickTally()
        self._probing = get_diagnostics().latency_probe
        self._keys: dict[str, _Keys] = {}
        self._risk = RiskBook(client, settings.risk, broker_equity(engine, settings))

    def _stalled(self, instrument: str) -> bool:
        """The instrument's stall flag (``workers.risk.feed_stall``): entries refused."""
        return feed_stalled(self.client, instrument)

    def drain(self, drainer_id: str, budget_s: float) -> DrainReport:
        """Serve ready sessions until none is due (finished) or the time budget is spent.

        Each round is two round trips whatever the number of sessions claimed: begin every
        claimed session (one pipeline), then end every one of them, renew this drainer's place
        and claim the next round's sessions (one pipeline); a round with backlogs reads their
        ticks with plain reads (one more), and a round in which some steps decided orders or
        events ends the others first (one more). Only a drainer that found nothing
        to claim claims on its own. The budget is cut by up to a quarter at random: drain
        tasks started together would otherwise all hand over (through the broker) at once.
        """
        deadline = time.monotonic() + budget_s * (1 - secrets.randbelow(250) / 1000)
        sessions = ticks = 0
        idle_since = 0.0
        claimed: list[str] = []
        while time.monotonic() < deadline:
            if not claimed:
                batch = Batch(self.client)
                batch.commands += self._claim_commands(drainer_id)
                claimed = self._claimed(batch.execute(self._scripts))
            if not claimed:
                now = time.monotonic()
                idle_since = idle_since or now
                wait_s = IDLE_LINGER_S - (now - idle_since)
                if wait_s <= 0:
                    done_args: list[str | int] = [_now_ms(), drainer_id, RETRY_HORIZON_MS]
                    done_keys = [READY_KEY, DRAINERS_KEY, AWAKE_KEY, SLEEPERS_KEY]
                    if self._done(keys=done_keys, args=done_args):
                        return DrainReport(sessions, ticks, finished=True)
                    wait_s = RETRY_HORIZON_MS / 1000
                self._await_work(drainer_id, min(wait_s, deadline - now))
                continue
            idle_since = 0.0
            sessions += len(claimed)
            done, claimed = self._round_guarded(claimed, drainer_id, deadline)
            ticks += done
        if claimed:
            self.client.zadd(READY_KEY, dict.fromkeys(claimed, _now_ms()), xx=True)
        self._send_gathered()
        return DrainReport(sessions, ticks, finished=False)

    def _await_work(self, drainer_id: str, wait_s: float) -> None:
        """Sleep on the wake list (``scripts.SLEEP``) until a token comes, the earliest
        session put back in the ready set is due (a retry, a lease run out) or ``wait_s`` has
        passed; at once if a session is due already."""
        now = _now_ms()
        until = int(
            self._sleep(
                keys=[READY_KEY, AWAKE_KEY, SLEEPERS_KEY],
                args=[now, drainer_id, now + int(wait_s * 1000)],
            )
        )
        if (until - now) / 1000 >= WAIT_MIN_S:
            self.client.blpop([WAKE_KEY], timeout=(until - now) / 1000)

    def _send_gathered(self) -> None:
        """The latency samples and counts not sent yet, in one batch of their own (a drainer
        that stops past its budget, or ``process_many``)."""
        if not self._latency and not self._tally:
            return
        tail = Batch(self.client)
        tail.commands += [*self._latency.commands(), *self._tally.commands(self._add.sha)]
        try:
            _log_errors(tail.execute(self._scripts))
        except redis.RedisError as exc:
            log.warning("latency samples and metric counts not written: %s", exc)

    def _claim_commands(self, drainer_id: str) -> list[tuple[Any, ...]]:
        """Renew this drainer's place and claim due sessions (the second reply); the latency
        samples and the counts gathered so far go along."""
        settings = self.settings
        now = _now_ms()
        claim_keys = (READY_KEY, DRAINERS_KEY, BACKLOG_KEY, WAKE_KEY, AWAKE_KEY, SLEEPERS_KEY)
        claim_args = (
            now,
            settings.state.lock_ttl_ms,
            settings.ticks.claim_batch,
            settings.ticks.claim_min,
            BACKLOG_WAIT_MS,
            drainer_id,
            AWAKE_MS,
        )
        return [
            ("ZADD", DRAINERS_KEY, now + settings.ticks.drainer_grace_ms, drainer_id),
            ("EVALSHA", self._claim.sha, len(claim_keys), *claim_keys, *claim_args),
            *self._latency.commands(),
            *self._tally.commands(self._add.sha),
        ]

    def _claimed(self, replies: Sequence[Any]) -> list[str]:
        """The session ids claimed by the replies of ``_claim_commands`` (errors of the claim
        raised; those of the samples and counts that went along only logged)."""
        _checked(replies[0])
        claim = _checked(replies[1])
        _log_errors(replies[2:])
        return [_text(raw) for raw in claim]

    def _round_guarded(
        self, session_ids: Sequence[str], drainer_id: str, deadline: float
    ) -> tuple[int, list[str]]:
        """One round, and the sessions claimed for the next one (none once the budget is
        spent). A failure outside any one session's step (Redis down) retries them all later."""
        try:
            return self._round(session_ids, drainer_id, deadline)
        except Exception:
            log.exception(
                "tick steps of %s sessions failed; retrying in %s ms",
                len(session_ids),
                ERROR_RETRY_MS,
            )
            due = _now_ms() + ERROR_RETRY_MS
            self.client.zadd(READY_KEY, dict.fromkeys(session_ids, due), xx=True)
            return 0, []

    def process(self, session_id: str) -> int:
        """One step of one session; returns the number of entries it consumed."""
        return self.process_many([session_id])

    def process_many(self, session_ids: Sequence[str]) -> int:
        """One step of each session (claimed by this drainer); returns the entries consumed.

        A failure in one session's step is logged and that session retried later; the others
        go on. Locks taken here and not yet given back are released if this is interrupted.
        """
        try:
            return self._round(session_ids, None, 0.0)[0]
        finally:
            self._send_gathered()

    def _round(
        self, session_ids: Sequence[str], drainer_id: str | None, deadline: float
    ) -> tuple[int, list[str]]:
        """``process_many``; with a drainer id and time left before ``deadline``, the end
        pipeline also claims the next round's sessions (returned)."""
        token = secrets.token_hex(16)  # one lease token per round: each lease is its own key
        ttl_ms, batch = self.settings.state.lock_ttl_ms, self.settings.ticks.batch
        session_keys = [self._session_keys(session_id) for session_id in session_ids]
        begin = Batch(self.client)
        for session_id, keys in zip(session_ids, session_keys, strict=True):
            begin.script(
                self._begin,
                [keys.lock, keys.fence, keys.state, READY_KEY, keys.wanted],
                [token, ttl_ms, INLINE_ENTRIES, session_id],
            )
            begin.command("HMGET", keys.state, *BEGIN_FIELDS)
        both = begin.execute(self._scripts)
        replies, values = both[::2], both[1::2]
        if begin.resent:
            values = self._read_again(begin.resent, session_keys, values)
        held: dict[str, str] = {}
        steps: list[RoundStep] = []
        retry: dict[str, int] = {}
        consumed = 0
        claimed: list[str] = []
        claim_for = drainer_id if drainer_id and time.monotonic() < deadline else None
        loader, history = RoundLoader(self.client), RoundHistory(self.client)
        begun: list[_Begun] = []
        try:
            for session_id, keys, reply, read_values in zip(
                session_ids, session_keys, replies, values, strict=True
            ):
                if isinstance(reply, Exception):
                    log.error("session %s: begin failed (%s); retrying", session_id, reply)
                    retry[session_id] = ERROR_RETRY_MS
                    continue
                status = int(reply[0])
                if status == _UNKNOWN:
                    log.warning("session %s has no state; dropped from the ready set", session_id)
                    self._missing(session_id)
                    continue
                if status == 0:
                    retry[session_id] = BUSY_RETRY_MS
                    continue
                held[session_id] = token
                if isinstance(read_values, Exception):
                    log.error("session %s: reading its state failed (%s)", session_id, read_values)
                    self._release(session_id, held.pop(session_id))
                    retry[session_id] = ERROR_RETRY_MS
                    continue
                fields = loader.fields(keys.state, [*reply[2], *read_values])
                read = history.reader(keys.candles)
                fence, stream = int(reply[1]), _text(reply[4])
                begun.append((session_id, keys, fence, fields, reply[3], stream, read))
            for session_id, keys, fence, fields, raw, stream, read in self._read_backlogs(
                begun, batch, held, retry
            ):
                end_keys = [keys.state, keys.candles, keys.fence, keys.lock, stream, READY_KEY]
                try:
                    steps.append(self._step(session_id, token, fence, fields, raw, read, end_keys))
                except Exception:
                    log.exception(
                        "session %s: tick step failed; retrying in %s ms",
                        session_id,
                        ERROR_RETRY_MS,
                    )
                    self._release(session_id, token)
                    del held[session_id]
                    retry[session_id] = ERROR_RETRY_MS
            backlog = sum(item.entries for item in steps) >= BACKLOG_STEP_TICKS * max(1, len(steps))
            snapshots: list[StrategySnapshot] = []
            deciding = [item for item in steps if item.decided]
            if deciding:
                # The steps that decided nothing are written first: the rows and sends of the
                # others (SQL commits, a broker message each) would delay them for nothing.
                quiet = [item for item in steps if not item.decided]
                consumed = self._end_all(quiet, {}, None, snapshots)[0]
                for item in quiet:
                    del held[item.session_id]
                steps = self._record_orders(deciding, held, retry)
            done, claimed = self._end_all(steps, retry, claim_for, snapshots, backlog)
            consumed += done
            held.clear()
            save_round_snapshots(self.engine, snapshots)
        finally:
            loader.close()
            for session_id, token in held.items():
                self._release(session_id, token)
        return consumed, claimed

    def _read_backlogs(
        self, begun: list[_Begun], batch: int, held: dict[str, str], retry: dict[str, int]
    ) -> list[_Read]:
        """The steps begun with their new ticks: those whose begin left them to a plain read
        (a backlog: at least ``INLINE_ENTRIES``) read up to ``batch`` each, one ``XRANGE``
        each in one round trip; a step whose read failed is released and retried."""
        later = [item for item in begun if item[4] is None]
        reads = Batch(self.client)
        for item in later:
            after = "(" + str(item[3].get(CURSOR_FIELD, "0-0"))
            reads.command("XRANGE", item[5], after, "+", "COUNT", batch)
        read = dict(zip((item[0] for item in later), reads.execute(), strict=True))
        ready: list[_Read] = []
        for session_id, keys, fence, fields, inline, stream, history in begun:
            entries = inline if inline is not None else read[session_id]
            if isinstance(entries, Exception):
                log.error("session %s: ticks not read (%s); retrying", session_id, entries)
                self._release(session_id, held.pop(session_id))
                retry[session_id] = ERROR_RETRY_MS
                continue
            ready.append((session_id, keys, fence, fields, entries, stream, history))
        return ready

    def _read_again(
        self, resent: Sequence[int], session_keys: Sequence[_Keys], values: list[Any]
    ) -> list[Any]:
        """State fields read again for begins resent (NOSCRIPT): the first ran before them."""
        again = Batch(self.client)
        sessions = [index // 2 for index in resent]
        for index in sessions:
            again.command("HMGET", session_keys[index].state, *BEGIN_FIELDS)
        for index, reply in zip(sessions, again.execute(), strict=True):
            values[index] = reply
        return values

    def _session_keys(self, session_id: str) -> _Keys:
        """The key names of a session (made once per session: each checks the id)."""
        keys = self._keys.get(session_id)
        if keys is None:
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            keys = self._keys[session_id] = _Keys(
                lock_key(session_id),
                fence_key(session_id),
                state_key(session_id),
                candles_key(session_id),
                lock_wanted_key(session_id),
            )
        return keys

    def _step(
        self,
        session_id: str,
        token: str,
        fence: int,
        fields: LazyFields,
        raw: Sequence[Any],
        history: _History,
        end_keys: list[str],
    ) -> RoundStep:
        entries = [(entry_id, _pairs(values)) for entry_id, values in raw]
        stepper = SessionStep(
            session_id,
            fields,
            history,
            self._risk,
            protective_stops=self.settings.stops.protective,
            feed_stalled=self._stalled,
        )
        step = stepper.run(entries)
        cursor_before = fields.get(CURSOR_FIELD, "0-0")
        cursor = step.cursor or cursor_before
        oldest = entries[0][1] if entries and self._probing else None
        processed_ms = _now_ms()
        snapshot = None
        if step.candles:
            snapshot = snapshot_of(session_id, fields, step, cursor, datetime.now(UTC))
        return RoundStep(
            session_id,
            end_keys,
            token,
            fence,
            step,
            cursor,
            len(entries),
            oldest,
            snapshot,
            cursor_before,
            stream_times(raw),
            processed_ms,
        )

    def _end_all(
        self,
        steps: Sequence[RoundStep],
        retry: dict[str, int],
        claim_for: str | None,
        snapshots: list[StrategySnapshot],
        backlog: bool = False,
    ) -> tuple[int, list[str]]:
        """Write every step (fenced), release and re-ready, and put back sessions to retry;
        with ``claim_for`` (a drainer id) also claim the next round's sessions (returned),
        after setting the backlog key if ``backlog``. The snapshots of the steps written are
        added to ``snapshots``."""
        now, max_candles = _now_ms(), self.settings.state.max_candles
        end = Batch(self.client)
        for item in steps:
            end.script(self._end, item.end_keys, item.end_args(now, max_candles))
        for session_id, delay_ms in retry.items():
            end.command("ZADD", READY_KEY, "XX", now + delay_ms, session_id)
        if backlog:
            end.command("SET", BACKLOG_KEY, "1", "PX", BACKLOG_MARK_MS)
        if claim_for is not None:
            end.commands += self._claim_commands(claim_for)
        replies = end.execute(self._scripts)
        written = len(steps) + len(retry) + int(backlog)
        claimed: list[str] = []
        if claim_for is not None:
            try:
                claimed = self._claimed(replies[written:])
            except redis.RedisError as exc:
                log.error("claiming the next round failed (%s); claiming again", exc)
        try:
            return self._written(steps, replies[: len(steps)], now, snapshots), claimed
        except BaseException:
            if claimed:
                self.client.zadd(READY_KEY, dict.fromkeys(claimed, _now_ms()), xx=True)
            raise

    def _written(
        self,
        steps: Sequence[RoundStep],
        replies: Sequence[Any],
        now: int,
        snapshots: list[StrategySnapshot],
    ) -> int:
        """What follows the end replies: counts, latency samples, the snapshots to save."""
        consumed = 0
        for item, reply in zip(steps, replies, strict=True):
            if isinstance(reply, Exception):
                log.error("session %s: end failed (%s); retrying", item.session_id, reply)
                self.client.zadd(READY_KEY, {item.session_id: now + ERROR_RETRY_MS}, xx=True)
                continue
            status = int(reply)
            if status == _STALE:
                log.warning(
                    "session %s: fence %s is stale; this step was discarded",
                    item.session_id,
                    item.fence,
                )
                continue
            if status == _UNKNOWN:
                log.warning("session %s disappeared during its step", item.session_id)
                self._missing(item.session_id)
                continue
            consumed += item.entries
            result = item.result
            self._tally.step(
                result.ticks_processed,
                result.rejected,
                len(result.candles),
                item.times,
                item.processed_ms,
            )
            if item.snapshot is not None:
                snapshots.append(item.snapshot)
            if item.oldest is not None:
                self._latency.sample(item.oldest)
        return consumed

    def _missing(self, session_id: str) -> None:
        """A session met without state: its recovery is queued once (``workers.recovery``)."""
        try:
            request_recovery(self.client, self.engine, self.settings, self._send_task, session_id)
        except Exception:
            log.exception("session %s: recovery not queued", session_id)

    def _release(self, session_id: str, token: str) -> None:
        self._unlock(keys=[lock_key(session_id)], args=[token])

    def _held_again(self, steps: list[RoundStep], held: dict[str, str]) -> list[RoundStep]:
        """The deciding steps that still hold their session, each lease held again for a whole
        TTL (``scripts.HOLD_AGAIN``, one batch, after everything the steps read): their rows'
        transaction and sends may take long (a slow network), and a step whose lease ran out
        meanwhile would be re-run by another drainer and queue every send again, and again.
        A step whose fencing token is gone met a state lost mid-step (Redis restarted empty):
        what it read after the loss was nothing, so what it decided must not become order
        rows; its recovery is queued. A step overtaken is someone else's now. Neither writes
        anything."""
        ttl_ms = self.settings.state.lock_ttl_ms
        batch = Batch(self.client)
        for item in steps:
            fence_key, lock = item.end_keys[2], item.end_keys[3]
            batch.script(self._hold_again, [lock, fence_key], [item.token, ttl_ms, item.fence])
        kept: list[RoundStep] = []
        for item, reply in zip(steps, batch.execute(self._scripts), strict=True):
            if not isinstance(reply, Exception) and int(reply) == 1:
                kept.append(item)
                continue
            gone = not isinstance(reply, Exception) and int(reply) == -1
            log.warning(
                "session %s: fencing token %s %s; nothing it decided is written",
                item.session_id,
                item.fence,
                "gone (its state was lost mid-step)" if gone else f"not held ({reply})",
            )
            self._release(item.session_id, held.pop(item.session_id))
            if gone:
                self._missing(item.session_id)
        return kept

    def _record_orders(
        self, steps: list[RoundStep], held: dict[str, str], retry: dict[str, int]
    ) -> list[RoundStep]:
        """The rows of the orders a round decided are written (one transaction) before any
        of them is sent, and its events too, for the steps still holding their session
        (``_held_again``); then the sends are queued, before the steps'
        state is written. The steps whose state may be written are returned: if the rows
        cannot be written, none (their sessions are released and retried).

        A retry decides the same orders with the same client ids: the rows are found, the sends
        are queued again, and the broker refuses the duplicate ids. Its events have the same
        keys (``workers.ticks.round_rows``): a worker killed after the state write loses none,
        and a re-run writes none twice.
        """
        steps = self._held_again(steps, held)
        if not steps:
            return []
        decided = [(item.session_id, item.cursor_before, item.result) for item in steps]
        try:
            orders, created = write_decisions(self.engine, decided)
        except Exception:
            log.exception(
                "the rows of %s orders were not written; retrying their round in %s ms",
                sum(len(item.result.new_orders) for item in steps),
                ERROR_RETRY_MS,
            )
            for item in steps:
                self._release(item.session_id, held.pop(item.session_id))
                retry[item.session_id] = ERROR_RETRY_MS
            return []
        self._tally.orders_created += created
        sends = [[new.session_id, new.order.client_order_id] for new in orders]
        size = self.settings.orders.send_batch
        batches = [[sends[i : i + size]] for i in range(0, len(sends), size)]
        self._send_many(names.ORDERS_SEND_BATCH, batches, self.settings.queues.orders)
        return steps


def _checked(reply: Any) -> Any:
    """A pipeline reply, or the error it holds raised."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def _log_errors(replies: Sequence[Any]) -> None:
    """Errors among the replies of what goes along with a batch (samples, counts): logged, as
    a metric's write never stops the tick path."""
    for reply in replies:
        if isinstance(reply, Exception):
            log.warning("latency samples or metric counts not written: %s", reply)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
