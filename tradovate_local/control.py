"""The local server's own surface, ``/_local/`` (not Tradovate's): ticks pushed in, faults armed
and cleared, and the whole state as JSON. 127.0.0.1 only; every call needs the header
``X-Local-Control: <token>`` (env ``TRADOVATE_LOCAL_CONTROL_TOKEN``), compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import tornado.web

from tradovate_local import wire
from tradovate_local.faults import BadFault
from tradovate_local.market import BadTicks, parse_pushed

if TYPE_CHECKING:
    from tradovate_local.app import Server

_LOOPBACK = ("127.0.0.1", "::1")


class ControlHandler(tornado.web.RequestHandler):
    def initialize(self, server: Server) -> None:
        self.server = server

    def check_xsrf_cookie(self) -> None:
        return None

    def prepare(self) -> None:
        given = self.request.headers.get("X-Local-Control", "")
        allowed = self.request.remote_ip in _LOOPBACK
        if not allowed or not hmac.compare_digest(
            given.encode(), self.server.config.control_token.encode()
        ):
            self._json(403, {"errorText": "X-Local-Control missing or wrong"})

    def _json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(wire.dumps(body))

    def _body(self) -> Any:
        try:
            return wire.loads(self.request.body or b"null")
        except ValueError:
            return None


class TicksHandler(ControlHandler):
    def post(self) -> None:
        try:
            batch = parse_pushed(self.server.catalog, self._body())
        except BadTicks as exc:
            self._json(400, {"errorText": str(exc)})
            return
        self.server.apply_ticks(batch)
        self._json(200, {"accepted": len(batch)})


class FaultsHandler(ControlHandler):
    def get(self) -> None:
        self._json(200, self.server.faults.view())

    def post(self) -> None:
        body = self._body()
        if not isinstance(body, dict):
            self._json(400, {"errorText": "the body must be an object {name: value}"})
            return
        try:
            acting = self.server.faults.arm(body)
        except BadFault as exc:
            self._json(400, {"errorText": str(exc)})
            return
        if "expire_tokens" in acting:
            self.server.tokens.expire_all()
        if "drop_sockets" in acting:
            self.server.drop_sockets()
        self._json(200, self.server.faults.view())

    def delete(self) -> None:
        self.server.clear_faults()
        self._json(200, self.server.faults.view())


class StateHandler(ControlHandler):
    def get(self) -> None:
        self._json(200, self.server.state_view())
