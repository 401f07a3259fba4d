"""One Tradovate WebSocket connection's life, shared by the user-sync and market-data clients.

Both sockets speak the same frames (``wsproto``): the server opens with ``o``, the client
``authorize``s with a token (request 0) and sends the heartbeat ``[]`` every 2.5 s, the server
sends ``h`` and ``a[...]``, and ``c[...]`` when it closes. ``FrameReader`` reads the frames of
one connection (heartbeat sent on time, the server's silence watched); ``open_authorized``
takes a new connection to its authorized state; ``run_reconnecting`` runs one connection after
another with a back-off (1 s doubling to 30 s, with jitter, reset once a connection has stayed
up ``STABLE_S``) until ``stop``. A token is sent, never logged.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from trading.exceptions import ServiceUnavailable
from workers.brokers.tradovate import wsproto
from workers.brokers.tradovate.wsproto import CloseFrame, DataFrame, Event, OpenFrame, Response

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
AUTHORIZE_ID = 0
"""Every connection's first request: ``authorize``."""
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""assumed: the sync snapshot of a busy user can be large; the docs give no bound."""


class Connection(Protocol):
    """What ``UserSync`` needs of a socket (``websockets.sync.client.ClientConnection``)."""

    def send(self, message: str) -> None: ...

    def recv(self, timeout: float | None = None) -> str | bytes: ...

    def close(self) -> None: ...


Connector = Callable[[str], Connection]


class ConnectionOver(Exception):
    """This connection is over; ``run_reconnecting`` connects again after a back-off."""


CONNECTION_OVER = (
    ConnectionOver,
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
            raise ConnectionOver(f"expected the open frame, got {type(frame).__name__}")

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
        """The next frame that is not the server's heartbeat; ``ConnectionOver`` on a close frame,
        on silence past the limit, or on ``stop``."""
        while True:
            if self.stop.is_set():
                raise ConnectionOver("stopped")
            now = self.clock()
            if now - self.last_sent >= self.heartbeat_s:
                self.conn.send(wsproto.HEARTBEAT)
                self.last_sent = now
            if now - self.last_heard > self.silence_s:
                raise ConnectionOver(f"server silent for {now - self.last_heard:.1f}s")
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
                raise ConnectionOver(f"server closed ({frame.code} {frame.reason})")
            if isinstance(frame, wsproto.HeartbeatFrame):
                continue
            return frame


def open_authorized(
    conn: Connection, reader: FrameReader, token: str, on_event: Callable[[Event], None]
) -> None:
    """From a new connection's ``o`` to its accepted ``authorize`` (request ``AUTHORIZE_ID``);
    ``ConnectionOver`` if the server refuses the token."""
    reader.expect_open()
    # The frame holds the token: it is sent, never logged (wsproto.authorize).
    conn.send(wsproto.authorize(AUTHORIZE_ID, token))
    reader.sent()
    answer = reader.response(AUTHORIZE_ID, on_event)
    if not answer.ok:
        raise ConnectionOver(f"authorize answered {answer.status}")


@contextlib.contextmanager
def closing(conn: Connection) -> Iterator[Connection]:
    """``conn``, closed on the way out whatever happened (a failed close changes nothing)."""
    try:
        yield conn
    finally:
        with contextlib.suppress(OSError, WebSocketException):
            conn.close()


def run_reconnecting(
    what: str,
    run_once: Callable[[], None],
    stop: threading.Event,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
    backoff: Backoff,
    stable_s: float = STABLE_S,
) -> None:
    """``run_once`` (one connection, to its end), again and again after a back-off, until
    ``stop``; what ends a connection as expected is a warning, anything else is logged with
    its traceback, and neither ends the loop."""
    while not stop.is_set():
        started = clock()
        try:
            run_once()
        except CONNECTION_OVER as exc:
            log.warning("tradovate %s: connection over (%s)", what, describe(exc))
        except Exception as exc:
            log.exception("tradovate %s: unexpected %s", what, type(exc).__name__)
        if stop.is_set():
            return
        if clock() - started >= stable_s:
            backoff.reset()
        wait = backoff.next_wait()
        log.info("tradovate %s: reconnecting in %.1fs", what, wait)
        sleep(wait)


def describe(exc: BaseException) -> str:
    """An exception for a log line: its type and message (none of ours holds a secret)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
