"""A small Tradovate-like user WebSocket for tests: a tornado server in a thread of the test
process that speaks the documented frames (``workers.brokers.tradovate.wsproto`` cites them):
``o`` on open, ``h`` every ``heartbeat_s``, ``a[{"s":200,"i":0}]`` to an authorize with a
known token (401 otherwise), ``a[{"s":200,"i":1,"d":<snapshot>}]`` to ``user/syncrequest``,
then the props events queued for the next synced connection. It records every frame each
connection received, and can drop every connection or stay silent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket


class FakeUserSocket:
    def __init__(
        self,
        tokens: Sequence[str] = ("good-token",),
        snapshot: Mapping[str, Any] | None = None,
        heartbeat_s: float = 0.2,
    ) -> None:
        self.tokens = set(tokens)
        self.snapshot = dict(snapshot or {"users": [{"id": 9}]})
        self.heartbeat_s = heartbeat_s
        self.silent = False
        self.received: list[list[str]] = []
        """Frames received, one list per connection, in connection order."""
        self.pending_events: list[dict[str, Any]] = []
        self.handlers: list[_Handler] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    # ------------------------------------------------------------------ control

    def start(self) -> FakeUserSocket:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake user socket did not start")
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/websocket"

    def push_after_sync(self, entity_type: str, event_type: str, entity: dict[str, Any]) -> None:
        """A props event for the next connection that syncs (sent right after its snapshot)."""
        self.pending_events.append(
            {
                "e": "props",
                "d": {"entityType": entity_type, "eventType": event_type, "entity": entity},
            }
        )

    def push_now(self, entity_type: str, event_type: str, entity: dict[str, Any]) -> None:
        event = {
            "e": "props",
            "d": {"entityType": entity_type, "eventType": event_type, "entity": entity},
        }
        self._call(lambda: [h.send_frame("a" + json.dumps([event])) for h in self.handlers])

    def drop_all(self) -> None:
        """Close every open connection now (no ``c`` frame: the socket just goes)."""
        self._call(lambda: [h.close() for h in list(self.handlers)])

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _call(self, fn: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn)

    # ------------------------------------------------------------------ serving

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        app = tornado.web.Application([(r"/v1/websocket", _Handler, {"fake": self})])
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.stop()
            self.loop.close()


class _Handler(tornado.websocket.WebSocketHandler):
    def initialize(self, fake: FakeUserSocket) -> None:
        self.fake = fake
        self.frames: list[str] = []
        self.beat: asyncio.Task[None] | None = None

    def open(self, *args: str, **kwargs: str) -> None:
        self.fake.received.append(self.frames)
        self.fake.handlers.append(self)
        self.send_frame("o")
        self.beat = asyncio.get_event_loop().create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.fake.heartbeat_s)
            if not self.fake.silent:
                self.send_frame("h")

    def send_frame(self, text: str) -> None:
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(text)

    def on_message(self, message: str | bytes) -> None:
        text = message.decode() if isinstance(message, bytes) else message
        self.frames.append(text)
        if text == "[]":
            return
        endpoint, rid, _query, body = text.split("\n", 3)
        if endpoint == "authorize":
            status = 200 if body in self.fake.tokens else 401
            answer: dict[str, Any] = {"s": status, "i": int(rid)}
            if status != 200:
                answer["d"] = "Access is denied"
            self.send_frame("a" + json.dumps([answer]))
        elif endpoint == "user/syncrequest":
            self.send_frame("a" + json.dumps([{"s": 200, "i": int(rid), "d": self.fake.snapshot}]))
            events, self.fake.pending_events = self.fake.pending_events, []
            if events:
                self.send_frame("a" + json.dumps(events))

    def on_close(self) -> None:
        if self.beat is not None:
            self.beat.cancel()
        if self in self.fake.handlers:
            self.fake.handlers.remove(self)
