"""Tradovate's user-sync WebSocket: one connection that pushes every change of a user's
orders, fills, positions, commands and order versions (``UserSync``).

A connection's life (the WS guide and the sync request's pages, see ``wsproto``): the server
opens with ``o``; the client sends ``authorize`` (request 0) with an access token and waits
for its 200; sends ``user/syncrequest`` (request 1) for the user and waits for its answer, the
snapshot; from then on reads ``props`` events, sending the heartbeat ``[]`` every 2.5 s.

Every entity of the snapshot and every props event reaches ``on_entity``; after each snapshot,
``on_resync`` runs: whatever happened while no socket was listening is caught up by its
caller (polling the broker's REST API), never by trusting the socket alone.

Anything that ends a connection (a close frame, a dropped socket, a server silent past
``wsproto.SERVER_SILENCE_LIMIT_S``, a refused authorize or sync, a callback that failed)
leads to a new connection and a FRESH authorize and sync, after a back-off: 1 s doubling to
30 s, with jitter, reset once a connection has stayed up ``STABLE_S``. ``stop`` (a
``threading.Event``) ends ``run`` within one read timeout.

The access token is fetched from ``token`` for every connection and never logged.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from trading.exceptions import ServiceUnavailable
from workers.brokers.tradovate import wsproto
from workers.brokers.tradovate.wsproto import (
    CloseFrame,
    DataFrame,
    Event,
    OpenFrame,
    PropsEvent,
    Response,
)

log = logging.getLogger(__name__)
_socket_log = logging.getLogger(__name__ + ".socket")
_socket_log.setLevel(logging.INFO)
"""The websockets library's own logger for our connections, never at DEBUG: at DEBUG it
logs every frame sent, and the authorize frame holds the access token."""

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0
"""A connection that lasted this long resets the back-off to its minimum."""
OPEN_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""assumed: the sync snapshot of a busy user can be large; the docs give no bound."""
AUTHORIZE_ID = 0
SYNC_ID = 1


class Connection(Protocol):
    """What ``UserSync`` needs of a socket (``websockets.sync.client.ClientConnection``)."""

    def send(self, message: str) -> None: ...

    def recv(self, timeout: float | None = None) -> str | bytes: ...

    def close(self) -> None: ...


Connector = Callable[[str], Connection]


class SyncFailed(Exception):
    """This connection is over; ``run`` connects again after a back-off."""


CONNECTION_OVER = (
    SyncFailed,
    wsproto.ProtocolError,
    ServiceUnavailable,
    OSError,
    TimeoutError,
    WebSocketException,
)
"""What ends a connection as expected (a warning, then a new connection)."""


def default_connector(url: str) -> Connection:
    conn: Any = ws_connect(
        url,
        open_timeout=OPEN_TIMEOUT_S,
        close_timeout=2.0,
        max_size=MAX_FRAME_BYTES,
        logger=_socket_log,
    )
    return conn  # type: ignore[no-any-return]


class Backoff:
    """Waits of ``min(cap, base * 2**n)`` stretched by up to half again at random (jitter),
    never above the cap: each wait is at least the previous one until the cap."""

    def __init__(
        self,
        base_s: float = BACKOFF_MIN_S,
        cap_s: float = BACKOFF_MAX_S,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng
        self.attempt = 0

    def next_wait(self) -> float:
        plain = min(self.cap_s, self.base_s * (2.0**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return min(self.cap_s, plain * (1.0 + 0.5 * self.rng()))

    def reset(self) -> None:
        self.attempt = 0


class UserSync:
    """The user-sync client; ``run`` until ``stop`` is set (module docstring)."""

    def __init__(
        self,
        url: str,
        token: Callable[[], str],
        user_id: Callable[[], int],
        on_entity: Callable[[PropsEvent], None],
        on_resync: Callable[[], None],
        stop: threading.Event,
        *,
        connect: Connector = default_connector,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        backoff: Backoff | None = None,
        heartbeat_s: float = wsproto.HEARTBEAT_INTERVAL_S,
        silence_s: float = wsproto.SERVER_SILENCE_LIMIT_S,
        stable_s: float = STABLE_S,
        entity_types: Sequence[str] | None = wsproto.SYNC_ENTITY_TYPES,
    ) -> None:
        self.url = url
        self.token = token
        self.user_id = user_id
        self.on_entity = on_entity
        self.on_resync = on_resync
        self.stop = stop
        self.connect = connect
        self.clock = clock
        self.sleep: Callable[[float], object] = sleep if sleep is not None else stop.wait
        self.backoff = backoff if backoff is not None else Backoff()
        self.heartbeat_s = heartbeat_s
        self.silence_s = silence_s
        self.stable_s = stable_s
        self.entity_types = entity_types
        self.connections = 0
        """Connections that reached their snapshot (for tests and status)."""

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Connect, sync, read; on any failure wait and do it all again, until ``stop``."""
        while not self.stop.is_set():
            started = self.clock()
            try:
                self.run_once()
            except CONNECTION_OVER as exc:
                log.warning("tradovate user sync: connection over (%s)", describe(exc))
            except Exception as exc:
                log.exception("tradovate user sync: unexpected %s", type(exc).__name__)
            if self.stop.is_set():
                return
            if self.clock() - started >= self.stable_s:
                self.backoff.reset()
            wait = self.backoff.next_wait()
            log.info("tradovate user sync: reconnecting in %.1fs", wait)
            self.sleep(wait)

    def run_once(self) -> None:
        """One connection, from its ``o`` to its end (always an exception, or ``stop``)."""
        conn = self.connect(self.url)
        try:
            self._session(conn)
        finally:
            with contextlib.suppress(OSError, WebSocketException):
                conn.close()

    # ------------------------------------------------------------------ one connection

    def _session(self, conn: Connection) -> None:
        reader = FrameReader(conn, self.clock, self.heartbeat_s, self.silence_s, self.stop)
        reader.expect_open()
        # The frame holds the token: it is sent, never logged (wsproto.authorize).
        conn.send(wsproto.authorize(AUTHORIZE_ID, self.token()))
        reader.sent()
        answer = reader.response(AUTHORIZE_ID, self._event)
        if not answer.ok:
            raise SyncFailed(f"authorize answered {answer.status}")
        conn.send(wsproto.sync_request(SYNC_ID, [self.user_id()], self.entity_types))
        reader.sent()
        snapshot = reader.response(SYNC_ID, self._event)
        if not snapshot.ok:
            raise SyncFailed(f"user/syncrequest answered {snapshot.status}")
        for entity in wsproto.snapshot_entities(snapshot.data):
            self.on_entity(entity)
        self.connections += 1
        log.info("tradovate user sync: synced (connection %d)", self.connections)
        self.on_resync()
        while not self.stop.is_set():
            frame = reader.next_frame()
            if isinstance(frame, DataFrame):
                for message in frame.messages:
                    if isinstance(message, Event):
                        self._event(message)

    def _event(self, event: Event) -> None:
        if event.name == wsproto.PROPS:
            self.on_entity(wsproto.parse_props(event))


class FrameReader:
    """Frames of one connection, with the client's heartbeat sent on time and the server's
    silence watched."""

    def __init__(
        self,
        conn: Connection,
        clock: Callable[[], float],
        heartbeat_s: float,
        silence_s: float,
        stop: threading.Event,
    ) -> None:
        self.conn = conn
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.silence_s = silence_s
        self.stop = stop
        now = clock()
        self.last_heard = now
        self.last_sent = now

    def sent(self) -> None:
        self.last_sent = self.clock()

    def expect_open(self) -> None:
        frame = self.next_frame()
        if not isinstance(frame, OpenFrame):
            raise SyncFailed(f"expected the open frame, got {type(frame).__name__}")

    def response(self, request_id: int, on_event: Callable[[Event], None]) -> Response:
        """The answer to ``request_id``; events read meanwhile go to ``on_event``."""
        while True:
            frame = self.next_frame()
            if not isinstance(frame, DataFrame):
                continue
            found: Response | None = None
            for message in frame.messages:
                if isinstance(message, Response) and message.request_id == request_id:
                    found = message
                elif isinstance(message, Event):
                    on_event(message)
            if found is not None:
                return found

    def next_frame(self) -> wsproto.Frame:
        """The next frame that is not the server's heartbeat; ``SyncFailed`` on a close frame,
        on silence past the limit, or on ``stop``."""
        while True:
            if self.stop.is_set():
                raise SyncFailed("stopped")
            now = self.clock()
            if now - self.last_sent >= self.heartbeat_s:
                self.conn.send(wsproto.HEARTBEAT)
                self.last_sent = now
            if now - self.last_heard > self.silence_s:
                raise SyncFailed(f"server silent for {now - self.last_heard:.1f}s")
            timeout = max(
                0.01,
                min(self.last_sent + self.heartbeat_s, self.last_heard + self.silence_s) - now,
            )
            try:
                raw = self.conn.recv(timeout=min(timeout, 0.5))
            except TimeoutError:
                continue
            self.last_heard = self.clock()
            frame = wsproto.parse_frame(raw)
            if isinstance(frame, CloseFrame):
                raise SyncFailed(f"server closed ({frame.code} {frame.reason})")
            if isinstance(frame, wsproto.HeartbeatFrame):
                continue
            return frame


def describe(exc: BaseException) -> str:
    """An exception for a log line: its type and message (none of ours holds a secret)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
