"""The two WebSockets: framing and heartbeats, the user socket (``/v1/websocket``) and the
market-data socket (``/md/v1/websocket``).

Framing (https://github.com/tradovate/example-api-js tutorial/WebSockets/EX-06-Heartbeats and
EX-07-Making-Requests): the server opens with ``o``, sends ``h`` heartbeats, ``a[...]`` message
arrays and ``c[code,"reason"]`` before it closes. A client request is
``endpoint\\nid\\nquery\\nbody``; ``[]`` is a client heartbeat (every 2.5 s). A response is
``{"s": status, "i": id, "d": data}``; an event ``{"e": kind, "d": data}``.
Authorization: ``authorize\\n0\\n\\n<token>`` → ``{"s":200,"i":0}``, a bad token → ``{"s":401}``
(https://partner.tradovate.com/overview/conformance-testing/stage-2-websocket-management).
The docs give no figure for how long a silent client is kept: assumed 10 s
(``--client-timeout``), four missed 2.5 s heartbeats.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import tornado.ioloop
import tornado.websocket

from tradovate_local import rest, wire
from tradovate_local.marketdata import Bar, trade_date

if TYPE_CHECKING:
    from tradovate_local.app import Server

_subscription_ids = itertools.count(1)


class Socket(tornado.websocket.WebSocketHandler):
    """Framing, heartbeats and authorization shared by both sockets."""

    token_kinds: tuple[str, ...] = ("access",)

    def initialize(self, server: Server) -> None:
        self.server = server
        self.token: str | None = None
        self.user_id: int | None = None
        self.last_seen = time.monotonic()
        self._beat: tornado.ioloop.PeriodicCallback | None = None

    def check_origin(self, origin: str) -> bool:
        return True  # a local server; clients are programs, not browsers

    def open(self, *args: str, **kwargs: str) -> None:
        self.server.sockets.add(self)
        self.send_raw("o")
        self._beat = tornado.ioloop.PeriodicCallback(
            self._heartbeat, self.server.config.heartbeat_seconds * 1000
        )
        self._beat.start()

    def on_close(self) -> None:
        self.server.sockets.discard(self)
        if self._beat is not None:
            self._beat.stop()

    def _heartbeat(self) -> None:
        if time.monotonic() - self.last_seen > self.server.config.client_timeout:
            self.drop(1000, "no heartbeat from the client")
            return
        self.send_raw("h")

    def send_raw(self, text: str) -> None:
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(text)

    def send(self, messages: list[Any]) -> None:
        self.send_raw(wire.frame(messages))

    def drop(self, code: int, reason: str) -> None:
        self.send_raw(wire.close_frame(code, reason))
        self.close(code, reason)

    def on_message(self, message: str | bytes) -> None:
        self.last_seen = time.monotonic()
        text = message.decode() if isinstance(message, bytes) else message
        if text.strip() == "[]":
            return  # a client heartbeat
        parts = text.split("\n", 3)
        if len(parts) < 2:
            return  # assumed: a frame that is no request is ignored
        endpoint, raw_id = parts[0].strip(), parts[1].strip()
        query = parts[2] if len(parts) > 2 else ""
        raw_body = parts[3] if len(parts) > 3 else ""
        try:
            request_id = int(raw_id)
        except ValueError:
            return
        if endpoint == "authorize":
            self._authorize(request_id, raw_body.strip())
            return
        if (
            self.token is None
            or self.server.tokens.session(self.token, self.server.now(), self.token_kinds) is None
        ):
            self.send([wire.response(request_id, 401, "Access is denied")])
            return
        body: Any = None
        if raw_body.strip():
            try:
                body = wire.loads(raw_body)
            except ValueError:
                self.send([wire.response(request_id, 400, "the body is not JSON")])
                return
        query_args = dict(pair.split("=", 1) for pair in query.strip().split("&") if "=" in pair)
        self.request_(endpoint, request_id, query_args, body)

    def _authorize(self, request_id: int, token: str) -> None:
        session = self.server.tokens.session(token, self.server.now(), self.token_kinds)
        if session is None:
            self.send([wire.response(request_id, 401, "Access is denied")])
            return
        self.token, self.user_id = token, session.user_id
        self.send([wire.response(request_id, 200)])

    def request_(self, endpoint: str, request_id: int, query: dict[str, str], body: Any) -> None:
        raise NotImplementedError


class UserSocket(Socket):
    """``/v1/websocket``: ``user/syncrequest`` then ``props`` for every change of the user's
    entities; any REST operation as a request too."""

    def initialize(self, server: Server) -> None:
        super().initialize(server)
        self.synced = False

    def request_(self, endpoint: str, request_id: int, query: dict[str, str], body: Any) -> None:
        if endpoint.lower() == "user/syncrequest":
            self.send([wire.response(request_id, 200, self.server.sync_snapshot())])
            self.synced = True
            return
        answer = rest.handle(self.server, rest.Call(endpoint, query, body, self.token, "POST"))
        self.send([wire.response(request_id, answer.status, answer.body)])

    def push_props(self, events: list[dict[str, Any]]) -> None:
        if self.synced:
            for message in events:
                self.send([message])


class MarketSocket(Socket):
    """``/md/v1/websocket``: quotes and minute-bar charts
    (https://partner.tradovate.com/overview/core-concepts/web-sockets/market-data/market-data-request-reference)."""

    # The md socket is authorized with the mdAccessToken; assumed: the accessToken works too.
    token_kinds = ("md", "access")

    def initialize(self, server: Server) -> None:
        super().initialize(server)
        self.quotes: set[int] = set()
        self.charts: dict[int, tuple[int, int]] = {}  # realtimeId -> (contractId, historicalId)

    def request_(self, endpoint: str, request_id: int, query: dict[str, str], body: Any) -> None:
        body = body if isinstance(body, dict) else {}
        name = endpoint.lower()
        if name == "md/subscribequote":
            contract = self.server.catalog.by_symbol(body.get("symbol"))
            if contract is None:
                self.send([wire.response(request_id, 404, "unknown symbol")])
                return
            self.quotes.add(contract.id)
            # assumed: the subscription's response has no "d"; the current quote follows at once.
            self.send([wire.response(request_id, 200)])
            quote = self.server.book.market(contract.id).quote()
            if quote is not None:
                self.send([{"e": "md", "d": {"quotes": [quote]}}])
        elif name == "md/unsubscribequote":
            contract = self.server.catalog.by_symbol(body.get("symbol"))
            if contract is not None:
                self.quotes.discard(contract.id)
            self.send([wire.response(request_id, 200)])
        elif name == "md/getchart":
            self._get_chart(request_id, body)
        elif name == "md/cancelchart":
            # {subscriptionId}: the docs name the realtimeId; the JS tutorial sends the
            # historicalId — either cancels.
            wanted = body.get("subscriptionId")
            for realtime_id, (_, historical_id) in list(self.charts.items()):
                if wanted in (realtime_id, historical_id):
                    del self.charts[realtime_id]
            self.send([wire.response(request_id, 200)])
        else:
            self.send([wire.response(request_id, 404, f"no endpoint {endpoint}")])

    def _get_chart(self, request_id: int, body: dict[str, Any]) -> None:
        # md/getChart {symbol, chartDescription{underlyingType, elementSize, elementSizeUnit,
        # withHistogram}, timeRange{closestTimestamp, closestTickId, asFarAsTimestamp,
        # asMuchAsElements}} → {historicalId, realtimeId}; then "chart" events
        # {"charts": [{"id", "td", "bars": [...]}]} and {"id": historicalId, "eoh": true} at the
        # end of history (tutorial/WebSockets/EX-10-Chart-Data; market-data-request-reference).
        contract = self.server.catalog.by_symbol(body.get("symbol"))
        description = body.get("chartDescription") or {}
        time_range = body.get("timeRange") or {}
        if contract is None:
            self.send([wire.response(request_id, 404, "unknown symbol")])
            return
        if (
            description.get("underlyingType") != "MinuteBar"
            or description.get("elementSize") != 1
            or description.get("elementSizeUnit") != "UnderlyingUnits"
        ):
            # assumed: only 1-minute bars are served locally.
            self.send([wire.response(request_id, 400, "only 1-minute MinuteBar charts")])
            return
        try:
            as_much = time_range.get("asMuchAsElements")
            closest = _time(time_range.get("closestTimestamp"))
            as_far = _time(time_range.get("asFarAsTimestamp"))
        except ValueError:
            self.send([wire.response(request_id, 400, "bad timeRange")])
            return
        if as_much is None and closest is None and as_far is None:
            self.send([wire.response(request_id, 400, "timeRange needs at least one field")])
            return
        historical_id, realtime_id = next(_subscription_ids), next(_subscription_ids)
        self.send(
            [
                wire.response(
                    request_id, 200, {"historicalId": historical_id, "realtimeId": realtime_id}
                )
            ]
        )
        market = self.server.book.market(contract.id)
        bars = market.history(int(as_much) if as_much is not None else None, closest, as_far)
        packets: list[dict[str, Any]] = []
        for bar in bars:
            td = _td(bar)
            if not packets or packets[-1]["td"] != td:
                packets.append({"id": historical_id, "td": td, "bars": []})
            packets[-1]["bars"].append(bar.entity())
        if packets:
            self.send([{"e": "chart", "d": {"charts": packets}}])
        self.send([{"e": "chart", "d": {"charts": [{"id": historical_id, "eoh": True}]}}])
        self.charts[realtime_id] = (contract.id, historical_id)

    def on_tick(self, contract_id: int, quote: dict[str, Any] | None, bar: Bar) -> None:
        if contract_id in self.quotes and quote is not None:
            self.send([{"e": "md", "d": {"quotes": [quote]}}])
        for realtime_id, (chart_contract, _) in self.charts.items():
            if chart_contract == contract_id:
                # assumed: the live bar is sent again, whole, on every tick that changes it.
                packet = {"id": realtime_id, "td": _td(bar), "bars": [bar.entity()]}
                self.send([{"e": "chart", "d": {"charts": [packet]}}])


def _td(bar: Bar) -> int:
    day = trade_date(bar.start)
    return day.year * 10000 + day.month * 100 + day.day


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("a timestamp must be a string")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a timestamp needs a zone")
    return moment
