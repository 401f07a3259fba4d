"""The local Tradovate server as its own process, and plain clients for it (HTTP and WebSocket).

``LocalTradovate.start(workdir, *args)`` runs ``python -m tradovate_local --port 0 ...`` with
test credentials in its environment, waits (with a deadline) for its one ready line and knows
its URLs; ``stop()`` ends it. ``Ws`` is a synchronous WebSocket client (tornado on a thread of
its own) that sends a ``[]`` heartbeat every 2 s, as Tradovate's clients must.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import tornado.websocket

READY = "tradovate-local listening on "
USER, PASSWORD, CID, SEC = "tester", "pa55-word", "7", "app-secret"
CONTROL = "control-token-for-tests"


def credentials(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": USER,
        "password": PASSWORD,
        "appId": "tradefleet-tests",
        "appVersion": "1.0",
        "cid": CID,
        "sec": SEC,
        "deviceId": "tests",
    }
    body.update(overrides)
    return body


def fleet_overrides(server: LocalTradovate) -> dict[str, str]:
    """A ``Fleet``'s Tradovate settings (by their variables' names) for ``server``, with the
    test credentials: the fleet's workers and its own settings reach the server."""
    return {
        "tradovate_rest_url": server.rest,
        "tradovate_ws_url": server.ws_url,
        "tradovate_md_ws_url": server.md_url,
        "tradovate_username": USER,
        "tradovate_password": PASSWORD,
        "tradovate_app_id": "tradefleet-tests",
        "tradovate_cid": CID,
        "tradovate_sec": SEC,
    }


class LocalTradovate:
    def __init__(self, process: subprocess.Popen[str], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.rest = url + "/v1"
        self.ws_url = url.replace("http://", "ws://") + "/v1/websocket"
        self.md_url = url.replace("http://", "ws://") + "/md/v1/websocket"
        self.log = log

    @classmethod
    def start(cls, workdir: Path, *args: str, timeout: float = 20.0) -> LocalTradovate:
        env = dict(os.environ)
        env.update(
            TRADOVATE_LOCAL_CONTROL_TOKEN=CONTROL,
            TRADOVATE_LOCAL_USER=USER,
            TRADOVATE_LOCAL_PASSWORD=PASSWORD,
            TRADOVATE_LOCAL_CID=CID,
            TRADOVATE_LOCAL_SEC=SEC,
        )
        log = workdir / "tradovate-local.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "tradovate_local", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env=env,
        )
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                process.kill()
                raise AssertionError(
                    f"tradovate-local did not start: {log.read_text(errors='replace')[-2000:]}"
                )
            if selector.select(timeout=min(left, 0.5)):
                line = process.stdout.readline()
                if line.startswith(READY):
                    selector.close()
                    return cls(process, line[len(READY) :].strip(), log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    # --- HTTP ------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """``(status, JSON body or None, headers)`` of one request to ``url + path``."""
        data = None if body is None else json.dumps(body, default=str).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                raw, status, got = answer.read(), answer.status, dict(answer.headers)
        except urllib.error.HTTPError as error:
            raw, status, got = error.read(), error.code, dict(error.headers)
        parsed = json.loads(raw, parse_float=Decimal) if raw else None
        return status, parsed, got

    def v1(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, parsed, _ = self.call(method, "/v1/" + path, body, token)
        assert status == 200, (status, parsed)
        return parsed

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, parsed, _ = self.call(
            method, "/_local/" + path, body, headers={"X-Local-Control": CONTROL}
        )
        assert status == 200, (status, parsed)
        return parsed

    def token(self) -> dict[str, Any]:
        answer = self.v1("POST", "auth/accesstokenrequest", credentials())
        assert "accessToken" in answer, answer
        return dict(answer)

    def ticks(self, *ticks: dict[str, str]) -> None:
        self.control("POST", "market/ticks", list(ticks))


class Ws:
    """A synchronous WebSocket client; ``frames()`` yields every frame received."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._conn = self._run(lambda: tornado.websocket.websocket_connect(url), 10)
        self._beating = True
        self._loop.call_soon_threadsafe(self._beat)
        self._next = 0

    def _run(self, make: Callable[[], Any], timeout: float) -> Any:
        """Run the awaitable ``make()`` builds on the client's loop (built there, so its
        future belongs to that loop)."""

        async def wrapped() -> Any:
            return await asyncio.wait_for(make(), timeout)

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(timeout + 2)

    def _beat(self) -> None:
        if self._beating:
            self._conn.write_message("[]")
            self._loop.call_later(2.0, self._beat)

    def send(self, text: str) -> None:
        self._run(lambda: self._conn.write_message(text), 5)

    def request(self, endpoint: str, body: Any = None, query: str = "") -> int:
        self._next += 1
        payload = "" if body is None else (body if isinstance(body, str) else json.dumps(body))
        self.send(f"{endpoint}\n{self._next}\n{query}\n{payload}")
        return self._next

    def recv(self, timeout: float) -> str | None:
        """The next frame, or None when the socket closed; TimeoutError past ``timeout``."""
        message = self._run(self._conn.read_message, timeout)
        return message  # type: ignore[no-any-return]

    def messages_until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Every message of ``a`` frames received until ``done(messages)`` holds (deadline)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not done(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; got {got}")
            frame = self.recv(left)
            if frame is None:
                raise AssertionError(f"socket closed; got {got}")
            if frame.startswith("a"):
                got += json.loads(frame[1:], parse_float=Decimal)
        return got

    def response(self, request_id: int, timeout: float = 10.0) -> dict[str, Any]:
        got = self.messages_until(lambda ms: any(m.get("i") == request_id for m in ms), timeout)
        return next(m for m in got if m.get("i") == request_id)

    def close(self) -> None:
        self._beating = False
        self._loop.call_soon_threadsafe(self._conn.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def props(messages: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for message in messages:
        if message.get("e") == "props":
            data = message["d"]
            yield data["entityType"], data["eventType"], data["entity"]
