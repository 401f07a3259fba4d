"""Publishing ticks: one capped stream per instrument, and waking the sessions it feeds.

One script call per batch (of any number of instruments) appends the ticks, marks every
subscribed session ready once (``ZADD NX``: however many ticks arrive) and names the drain
tasks to start, so that at most ``max_drainers`` drain tasks count as queued or running (a
dead one stops counting after its grace time).

Publishing is idempotent per batch: each batch carries its place in the feed's own numbering
of the instrument's entries (``FeedSeq``: the feed's name and the number of its first entry),
and the script skips the entries of that feed it has already appended. A batch sent again (a
retry after a lost reply, by the client's retry policy or by the feed) appends nothing twice;
two identical prints in one millisecond are two numbers, both kept. A publisher numbers its
batches itself under a name of its own; a feed that retries a batch itself passes the
``FeedSeq`` it sent it with (``number`` reserves one). Entries refused as duplicates, and
entries appended to a stream no session reads, are counted in
``tradefleet_ticks_rejected_total`` (reasons ``duplicate`` and ``unknown_instrument``, once per
entry).

A feed that can publish its history again asks for the guard (``guard=True``): a batch
numbered past its feed's first entry whose feed record (``md:{<instrument>}:source``) is gone
met a stream that lost its history (Redis restarted empty). Nothing of it is appended and
``StreamLost`` names the instrument: the feed publishes again from where the instrument's
sessions resume (``workers.ticks.snapshots.resume_point``), its numbering of that instrument
started over (``restart_numbering``). Without the guard such a batch is published.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from trading.candles import DUPLICATE, UNKNOWN_INSTRUMENT
from trading.market import Tick
from workers.dispatch import names
from workers.dispatch.sending import SendMany
from workers.metrics.catalog import TICKS_REJECTED
from workers.metrics.counters import count
from workers.ticks import scripts
from workers.ticks.keys import (
    AWAKE_KEY,
    DRAINERS_KEY,
    READY_KEY,
    SLEEPERS_KEY,
    WAKE_KEY,
    source_key,
    stream_key,
    subscribers_key,
)
from workers.ticks.pipelines import Batch

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CALL_TICKS = 1_000
"""``publish_many`` starts a new script call once one holds this many ticks."""
RawTick = tuple[str, str, str, str, str]
"""A stream entry as published: (t epoch ms, price, size, bid or '', ask or '')."""


def epoch_ms(tick: Tick) -> int:
    """The tick's data time in whole epoch milliseconds (exact, no float)."""
    delta = tick.time - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def encode_tick(tick: Tick) -> RawTick:
    return (
        str(epoch_ms(tick)),
        str(tick.price),
        str(tick.size),
        "" if tick.bid is None else str(tick.bid),
        "" if tick.ask is None else str(tick.ask),
    )


@dataclass(frozen=True, slots=True)
class FeedSeq:
    """A batch's place in its feed's numbering of one instrument's entries: the feed's name
    and the number of the batch's first entry (the next entries one up each)."""

    source: str
    first: int


class StreamLost(Exception):
    """Instrument streams found without their feed's record: Redis lost them (see the module);
    nothing of these instruments' batches was appended."""

    def __init__(self, instruments: Sequence[str]) -> None:
        self.instruments = tuple(instruments)
        super().__init__(f"stream history lost: {', '.join(self.instruments)}")


@dataclass(frozen=True, slots=True)
class PublishResult:
    published: int
    """Entries appended (duplicates skipped are not)."""
    sessions_woken: int
    drain_tasks_started: int
    duplicates: int = 0
    """Entries skipped: their feed had published them already."""
    unread: int = 0
    """Entries appended to a stream no session reads (an unknown instrument)."""


class TickPublisher:
    """Appends ticks to an instrument's stream and wakes its sessions."""

    def __init__(
        self,
        client: redis.Redis,
        send: SendMany,
        *,
        queue: str,
        max_drainers: int,
        stream_maxlen: int,
        drainer_grace_ms: int,
    ) -> None:
        self._client = client
        self._send = send
        self._queue = queue
        self._max_drainers = max_drainers
        self._maxlen = stream_maxlen
        self._grace_ms = drainer_grace_ms
        self._publish = client.register_script(scripts.PUBLISH)
        self._wake = client.register_script(scripts.WAKE)
        self.source = f"pub-{uuid.uuid4().hex[:16]}"
        """The name this publisher numbers its batches under (one per publisher)."""
        self._next: dict[str, int] = {}

    @property
    def client(self) -> redis.Redis:
        return self._client

    def publish(self, instrument: str, ticks: Iterable[Tick]) -> PublishResult:
        return self.publish_raw(instrument, [encode_tick(t) for t in ticks])

    def number(self, instrument: str, n: int) -> FeedSeq:
        """The next ``n`` numbers of ``instrument``'s entries under this publisher's name: for
        a batch its caller may have to send again (then with the same ``FeedSeq``)."""
        first = self._next.get(instrument, 0)
        self._next[instrument] = first + n
        return FeedSeq(self.source, first)

    def restart_numbering(self, instrument: str) -> None:
        """Number ``instrument``'s entries from 0 again: its stream lost its history and is
        published again (``StreamLost``)."""
        self._next[instrument] = 0

    def publish_raw(
        self,
        instrument: str,
        rows: Sequence[RawTick],
        at: FeedSeq | None = None,
        *,
        guard: bool = False,
    ) -> PublishResult:
        """Publish stream entries as given (consumers validate them; a bad one is counted);
        ``at``: the batch's numbering (the next numbers of this publisher when not given);
        ``guard``: raise ``StreamLost`` instead of publishing to a stream that lost its
        history (see the module)."""
        return self.publish_many(
            {instrument: rows}, None if at is None else {instrument: at}, guard=guard
        )

    def publish_many(
        self,
        batches: Mapping[str, Sequence[RawTick]],
        at: Mapping[str, FeedSeq] | None = None,
        *,
        guard: bool = False,
    ) -> PublishResult:
        """``publish_raw`` for several instruments in one round trip: one script call per
        ``CALL_TICKS`` ticks or so (a long script would hold up every other client)."""
        calls: list[tuple[list[str], list[str | int]]] = []
        keys: list[str] = []
        args: list[str | int] = []
        now = _now_ms()
        size = 0
        for instrument, rows in batches.items():
            if not rows:
                continue
            if not keys or size >= CALL_TICKS:
                keys = [READY_KEY, DRAINERS_KEY, WAKE_KEY, AWAKE_KEY, SLEEPERS_KEY]
                args = [self._maxlen, now, self._max_drainers, self._grace_ms, int(guard)]
                calls.append((keys, args))
                size = 0
            size += len(rows)
            seq = at.get(instrument) if at is not None else None
            if seq is None:
                seq = self.number(instrument, len(rows))
            keys += [stream_key(instrument), subscribers_key(instrument), source_key(instrument)]
            args += [len(rows), seq.source, seq.first]
            for row in rows:
                args.extend(row)
        if not calls:
            return PublishResult(0, 0, 0)
        batch = Batch(self._client)
        for call_keys, call_args in calls:
            batch.script(self._publish, call_keys, call_args)
        replies = batch.execute([self._publish])
        newly = started = duplicates = unread = 0
        lost: list[str] = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            woken, drainer_ids, skipped, unsubscribed, gone = reply
            lost += [_instrument_of(key) for key in gone]
            newly += int(woken)
            started += len(drainer_ids)
            duplicates += int(skipped)
            unread += int(unsubscribed)
            self._start_drainers(drainer_ids)
        if duplicates:
            count(self._client, TICKS_REJECTED, DUPLICATE, n=duplicates)
        if unread:
            count(self._client, TICKS_REJECTED, UNKNOWN_INSTRUMENT, n=unread)
        if lost:
            raise StreamLost(lost)
        published = sum(len(rows) for rows in batches.values()) - duplicates
        return PublishResult(published, newly, started, duplicates, unread)

    def wake(self) -> int:
        """Start drain tasks for due sessions nobody is draining (after a worker died), and
        wake an idle drainer if sessions are due."""
        drainer_ids = self._wake(
            keys=[READY_KEY, DRAINERS_KEY, WAKE_KEY, SLEEPERS_KEY],
            args=[_now_ms(), self._max_drainers, self._grace_ms],
        )
        self._start_drainers(drainer_ids)
        return len(drainer_ids)

    def _start_drainers(self, drainer_ids: Sequence[bytes | str]) -> None:
        ids = [raw.decode() if isinstance(raw, bytes) else raw for raw in drainer_ids]
        self._send(names.TICKS_DRAIN, [[drainer_id] for drainer_id in ids], self._queue)


def _instrument_of(key: bytes | str) -> str:
    """``md:{<instrument>}:ticks`` → the instrument."""
    text = key.decode() if isinstance(key, bytes) else key
    return text.split("{", 1)[1].split("}", 1)[0]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
