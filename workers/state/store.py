"""The Redis state store: create / load / delete sessions, leases with fencing, fenced writes.

A session is changed only under its lock. ``acquire`` takes the lease (``SET NX PX`` with a
random token) and a fencing token (``INCR`` of the session's fence counter) in one script, and
returns the state hash with them. ``write`` is one script that refuses, writing nothing, when a
newer fencing token has been issued (``StaleFence``) or the session is gone (``UnknownSession``).
A worker that stalls past its lease can therefore never overwrite newer state.

Nothing here connects at import time; the caller passes a redis-py client.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from models.codec import (
    DEFAULT_MAX_CANDLES,
    DEFAULT_MAX_TRADES,
    HASH_FIELDS,
    candles_key,
    decode_field,
    decode_state,
    encode_candle,
    encode_fields,
    encode_state,
    encode_trade,
    fence_key,
    lock_key,
    lock_wanted_key,
    session_keys,
    state_key,
    trades_key,
)
from models.meta import FENCE_FIELD
from models.state import SessionState, Trade
from trading.exceptions import (
    LockBusy,
    ServiceUnavailable,
    SessionExists,
    StaleFence,
    UnknownSession,
)
from trading.market import Candle
from workers.state import scripts
from workers.state.lease_keeper import HeldLease, LeaseKeeper

T = TypeVar("T")

_WRITTEN = 1
_UNKNOWN = -1
_STALE = -2
LOCK_WANTED_MS = 1_000
"""How long a lock stays marked wanted after its waiter's last try (a waiter that gave up or
died holds the tick path back from the session no longer than this)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A held session lock: its random token, the fencing token taken with it, and the
    state hash as it was when the lock was taken (field name -> JSON text)."""

    session_id: str
    token: str
    fence: int
    ttl_ms: int
    fields: Mapping[str, str] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """The decoded value of one state-hash field as read at acquire time."""
        return decode_field(name, self.fields[name])


@dataclass(frozen=True, slots=True)
class StateChanges:
    """One fenced write: already-encoded hash fields, and entries appended to the lists.

    ``meta``: text values of meta fields kept in the state hash beside the struct (names start
    with ``_``, e.g. ``_reconcile``; ``_fence`` is the store's own and refused), written in
    the same fenced step.
    """

    fields: Mapping[str, str] = field(default_factory=dict)
    append_candles: Sequence[str] = ()
    append_trades: Sequence[str] = ()
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in self.fields if name not in HASH_FIELDS]
        if unknown:
            raise ValueError(f"not state-hash fields: {unknown}")
        bad_meta = [n for n in self.meta if not n.startswith("_") or n == FENCE_FIELD]
        if bad_meta:
            raise ValueError(f"not meta fields (a leading '_', not {FENCE_FIELD}): {bad_meta}")

    @classmethod
    def of(
        cls,
        values: Mapping[str, Any] | None = None,
        candles: Iterable[Candle] = (),
        trades: Iterable[Trade] = (),
        meta: Mapping[str, str] | None = None,
    ) -> StateChanges:
        """Build from Python values (encoded here with ``models.codec``)."""
        values = values or {}
        return cls(
            fields=encode_fields(values, values.keys()),
            append_candles=tuple(encode_candle(c) for c in candles),
            append_trades=tuple(encode_trade(t) for t in trades),
            meta=dict(meta or {}),
        )


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


ScriptArg = str | int


def _counted(items: Sequence[str]) -> list[ScriptArg]:
    return [len(items), *items]


def _pairs(fields: Mapping[str, str]) -> list[ScriptArg]:
    out: list[ScriptArg] = [len(fields)]
    for name, value in fields.items():
        out += [name, value]
    return out


class StateStore:
    """Session state in Redis, changed only under a fenced lease."""

    def __init__(
        self,
        client: redis.Redis,
        lock_ttl_ms: int,
        max_candles: int = DEFAULT_MAX_CANDLES,
        max_trades: int = DEFAULT_MAX_TRADES,
    ) -> None:
        if lock_ttl_ms < 10:
            raise ValueError("lock_ttl_ms must be at least 10")
        if max_candles < 1 or max_trades < 1:
            raise ValueError("list bounds must be at least 1")
        self.client = client
        self.lock_ttl_ms = lock_ttl_ms
        self.max_candles = max_candles
        self.max_trades = max_trades
        self._create = client.register_script(scripts.CREATE)
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._renew = client.register_script(scripts.RENEW)
        self._release = client.register_script(scripts.RELEASE)
        self._write = client.register_script(scripts.WRITE)
        self._delete = client.register_script(scripts.DELETE)
        self._keeper = LeaseKeeper(self.renew)
        self._released: set[str] = set()
        """Tokens of leases a write released (``write(release=True)``): ``locked`` has nothing
        left to release for them."""

    # ------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceUnavailable(f"redis did not answer: {exc}") from exc

    # ------------------------------------------------------------ whole sessions

    def create(self, state: SessionState, meta: Mapping[str, str] | None = None) -> None:
        """Write every key of a new session atomically; ``SessionExists`` if it exists.

        ``meta``: meta fields (``_cursor``, ``_reconcile``, ...) written in the same step, so a
        rebuilt session is never seen without them (``workers.recovery``).
        """
        sid = state.session.id
        encoded = encode_state(state, self.max_candles, self.max_trades)
        extra = dict(StateChanges(meta=meta or {}).meta)
        args: list[ScriptArg] = [
            *_pairs({**encoded.hash, **extra}),
            *_counted(encoded.candles),
            *_counted(encoded.trades),
        ]
        keys = [state_key(sid), candles_key(sid), trades_key(sid), fence_key(sid)]
        created = self._call(lambda: self._create(keys=keys, args=args))
        if not created:
            raise SessionExists(sid)

    def exists(self, session_id: str) -> bool:
        key = state_key(session_id)
        return bool(self._call(lambda: self.client.exists(key)))

    def load(self, session_id: str) -> SessionState:
        """The whole state; ``UnknownSession`` if its state hash does not exist."""
        keys = (state_key(session_id), candles_key(session_id), trades_key(session_id))

        def read() -> list[Any]:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys[0])
                pipe.lrange(keys[1], 0, -1)
                pipe.lrange(keys[2], 0, -1)
                return list(pipe.execute())

        hash_fields, candles, trades = self._call(read)
        if not hash_fields:
            raise UnknownSession(session_id)
        return decode_state(hash_fields, candles, trades)

    def delete(self, session_id: str) -> bool:
        """Delete the state, lists and lock of a session; True if it existed.

        The fence counter is kept: a worker still holding an old lease must stay refused even
        if a session with the same id is created again.
        """
        keys = list(session_keys(session_id)[:4])
        return bool(self._call(lambda: self._delete(keys=keys, args=[])))

    # ------------------------------------------------------------ leases

    def try_acquire(
        self, session_id: str, *, with_state: bool = True, will_wait: bool = False
    ) -> Lease | None:
        """Take the lock once; None if another worker holds it. ``will_wait``: the caller
        tries again until it has it, and marks the lock wanted meanwhile (the tick path's
        drainers leave it to the caller: ``scripts.ACQUIRE``)."""
        token = secrets.token_hex(16)
        keys = [lock_key(session_id), fence_key(session_id), state_key(session_id)]
        keys.append(lock_wanted_key(session_id))
        wanted_ms = LOCK_WANTED_MS if will_wait else 0
        args: list[ScriptArg] = [token, self.lock_ttl_ms, "1" if with_state else "0", wanted_ms]
        reply = self._call(lambda: self._acquire(keys=keys, args=args))
        status = int(reply[0])
        if status == _UNKNOWN:
            raise UnknownSession(session_id)
        if status == 0:
            return None
        flat = reply[2:]
        fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        fields.pop(FENCE_FIELD, None)
        return Lease(session_id, token, int(reply[1]), self.lock_ttl_ms, fields)

    def acquire(
        self,
        session_id: str,
        wait_s: float = 0.0,
        poll_s: float = 0.01,
        *,
        with_state: bool = True,
    ) -> Lease:
        """Take the lock, polling for up to ``wait_s`` seconds; ``LockBusy`` if still held."""
        deadline = time.monotonic() + wait_s
        while True:
            will_wait = deadline - time.monotonic() > 0
            lease = self.try_acquire(session_id, with_state=with_state, will_wait=will_wait)
            if lease is not None:
                return lease
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockBusy(f"session {session_id} is locked by another worker")
            time.sleep(min(poll_s, remaining))

    def renew(self, lease: HeldLease) -> bool:
        """Extend the lease by its TTL; False if it is no longer ours (expired or taken)."""
        keys = [lock_key(lease.session_id)]
        args: list[ScriptArg] = [lease.token, lease.ttl_ms]
        return bool(self._call(lambda: self._renew(keys=keys, args=args)))

    def release(self, lease: Lease) -> bool:
        """Drop the lock if it is still ours; True if it was."""
        keys = [lock_key(lease.session_id)]
        args: list[ScriptArg] = [lease.token]
        return bool(self._call(lambda: self._release(keys=keys, args=args)))

    @contextmanager
    def locked(self, session_id: str, wait_s: float = 0.0) -> Iterator[Lease]:
        """Hold the session lock for the body, renewed every TTL/3 by the store's keeper
        (``workers.state.lease_keeper``), released at the end (unless a write of the body
        released it with its changes: one round trip less)."""
        lease = self.acquire(session_id, wait_s)
        self._keeper.hold(lease)
        try:
            yield lease
        finally:
            self._keeper.drop(lease)
            if lease.token in self._released:
                self._released.discard(lease.token)
            else:
                self.release(lease)

    # ------------------------------------------------------------ fenced writes

    def write(self, lease: Lease, changes: StateChanges, release: bool = False) -> None:
        """Apply ``changes`` atomically under ``lease``; ``release`` drops the lock too.

        Refused with nothing written: ``StaleFence`` if a newer fencing token was issued,
        ``UnknownSession`` if the session no longer exists.
        """
        self._fenced_write(
            lease,
            {**changes.fields, **changes.meta},
            changes.append_candles,
            changes.append_trades,
            release=release,
            replace_lists=False,
        )

    def write_state(self, lease: Lease, state: SessionState, release: bool = False) -> None:
        """Replace the whole state (hash and both lists) under ``lease``."""
        if state.session.id != lease.session_id:
            raise ValueError(
                f"state of {state.session.id} written under a lease on {lease.session_id}"
            )
        encoded = encode_state(state, self.max_candles, self.max_trades)
        self._fenced_write(
            lease,
            encoded.hash,
            encoded.candles,
            encoded.trades,
            release=release,
            replace_lists=True,
        )

    def _fenced_write(
        self,
        lease: Lease,
        fields: Mapping[str, str],
        candles: Sequence[str],
        trades: Sequence[str],
        *,
        release: bool,
        replace_lists: bool,
    ) -> None:
        sid = lease.session_id
        keys = [state_key(sid), candles_key(sid), trades_key(sid), fence_key(sid), lock_key(sid)]
        args: list[ScriptArg] = [
            lease.token,
            lease.fence,
            "1" if release else "0",
            "1" if replace_lists else "0",
            self.max_candles,
            self.max_trades,
            *_pairs(fields),
            *_counted(candles),
            *_counted(trades),
        ]
        status = int(self._call(lambda: self._write(keys=keys, args=args)))
        if status == _UNKNOWN:
            raise UnknownSession(sid)
        if status == _STALE:
            raise StaleFence(f"session {sid}: fence {lease.fence} is stale; nothing written")
        if status != _WRITTEN:
            raise RuntimeError(f"unexpected reply {status} from the write script")
        if release and self._keeper.holds(lease):
            self._released.add(lease.token)
