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

import logging
import threading
import time
from collections.abc import Callable, Sequence

from workers.brokers.tradovate import wsproto
from workers.brokers.tradovate.socket import (
    STABLE_S,
    Backoff,
    Connection,
    ConnectionOver,
    Connector,
    FrameReader,
    closing,
    default_connector,
    open_authorized,
    run_reconnecting,
)
from workers.brokers.tradovate.wsproto import DataFrame, Event, PropsEvent

log = logging.getLogger(__name__)

SYNC_ID = 1


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
        stop, clock, sleep = self.stop, self.clock, self.sleep
        run_reconnecting(
            "user sync", self.run_once, stop, clock, sleep, self.backoff, self.stable_s
        )

    def run_once(self) -> None:
        """One connection, from its ``o`` to its end (always an exception, or ``stop``)."""
        with closing(self.connect(self.url)) as conn:
            self._session(conn)

    # ------------------------------------------------------------------ one connection

    def _session(self, conn: Connection) -> None:
        reader = FrameReader(conn, self.clock, self.heartbeat_s, self.silence_s, self.stop)
        open_authorized(conn, reader, self.token(), self._event)
        conn.send(wsproto.sync_request(SYNC_ID, [self.user_id()], self.entity_types))
        reader.sent()
        snapshot = reader.response(SYNC_ID, self._event)
        if not snapshot.ok:
            raise ConnectionOver(f"user/syncrequest answered {snapshot.status}")
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
