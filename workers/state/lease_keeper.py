"""Renewing held leases in the background: one thread per state store, not one per lock held.

``StateStore.locked`` hands each lease it takes to its store's keeper and takes it back when
the body ends; the keeper renews every lease it holds each TTL/3 until then. Starting and
joining a thread for each lock held cost about 130 us of CPU here, and a filled order takes a
session's lock about four times. A lease whose renewal finds it gone (expired, or taken by a
newer holder) is dropped with a warning: the holder's writes will be refused by the fence. A
renewal that meets a Redis error is retried at the next turn.

The keeper's thread starts with its first lease and ends once it has held none for
``IDLE_EXIT_S``; a forked child forgets its parent's leases and thread (its own first lease
starts a thread of its own).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from trading.exceptions import ServiceUnavailable

log = logging.getLogger(__name__)

IDLE_EXIT_S = 5.0
"""A keeper thread with no lease to renew for this long ends (the next lease starts one)."""


class HeldLease(Protocol):
    @property
    def session_id(self) -> str: ...

    @property
    def token(self) -> str: ...

    @property
    def ttl_ms(self) -> int: ...


class LeaseKeeper:
    """Renews the leases it holds every TTL/3 (``renew`` answers False for a lease lost)."""

    def __init__(self, renew: Callable[[HeldLease], bool]) -> None:
        self._renew = renew
        self._held = _Held()
        _KEEPERS.add(self)

    def _forget(self) -> None:
        self._held = _Held()

    @property
    def thread(self) -> threading.Thread | None:
        """The thread renewing the leases held now (None while none is running)."""
        return self._held.thread

    def hold(self, lease: HeldLease) -> None:
        """Renew ``lease`` from TTL/3 from now on, until ``drop``."""
        held = self._held
        with held.changed:
            if held.thread is None:
                held.thread = threading.Thread(
                    target=self._run, args=(held,), name="lease-keeper", daemon=True
                )
                held.thread.start()
            held.due[lease.token] = (time.monotonic() + _interval_s(lease), lease)
            held.changed.notify()

    def drop(self, lease: HeldLease) -> None:
        """Stop renewing ``lease`` (a renewal already sent may still land: it is harmless, the
        renew script extends only a lock that still holds this lease's token)."""
        held = self._held
        with held.changed:
            held.due.pop(lease.token, None)

    def holds(self, lease: HeldLease) -> bool:
        held = self._held
        with held.changed:
            return lease.token in held.due

    def _run(self, held: _Held) -> None:
        while True:
            due = held.next_due()
            if due is None:
                return
            for lease in due:
                self._renew_one(held, lease)

    def _renew_one(self, held: _Held, lease: HeldLease) -> None:
        try:
            lost = not self._renew(lease)
        except ServiceUnavailable as exc:
            log.warning("could not renew lease on session %s: %s", lease.session_id, exc)
            lost = False
        with held.changed:
            if lease.token not in held.due:
                return
            if not lost:
                held.due[lease.token] = (time.monotonic() + _interval_s(lease), lease)
                return
            del held.due[lease.token]
        log.warning("lease on session %s was lost; writes will be refused", lease.session_id)


class _Held:
    """The leases one keeper thread renews: token -> (when it is due, lease)."""

    __slots__ = ("changed", "due", "thread")

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.due: dict[str, tuple[float, HeldLease]] = {}
        self.thread: threading.Thread | None = None

    def next_due(self) -> list[HeldLease] | None:
        """Wait until a lease is due for renewal: the due ones; None (and the thread is over)
        after ``IDLE_EXIT_S`` without any lease."""
        with self.changed:
            idle_until = time.monotonic() + IDLE_EXIT_S
            while True:
                now = time.monotonic()
                if not self.due:
                    if now >= idle_until:
                        self.thread = None
                        return None
                    self.changed.wait(idle_until - now)
                    continue
                due = [lease for at, lease in self.due.values() if at <= now]
                if due:
                    return due
                self.changed.wait(min(at for at, _ in self.due.values()) - now)


def _interval_s(lease: HeldLease) -> float:
    return lease.ttl_ms / 3000.0


_KEEPERS: weakref.WeakSet[LeaseKeeper] = weakref.WeakSet()


def _forget_after_fork() -> None:
    for keeper in list(_KEEPERS):
        keeper._forget()


os.register_at_fork(after_in_child=_forget_after_fork)
