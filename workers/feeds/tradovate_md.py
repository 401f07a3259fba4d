"""Tradovate's market-data messages, pure: requests out, quotes and chart bars in.

The socket's framing (``o``/``h``/``a[...]``/``c[...]``, ``endpoint\\nid\\nquery\\nbody``
requests, ``{"s","i","d"}`` responses, ``{"e","d"}`` events) is ``workers.brokers.tradovate.
wsproto``'s; this module knows what travels inside it on the market-data socket. No I/O.

Sources:
- MD  = https://partner.tradovate.com/overview/core-concepts/web-sockets/market-data/market-data
  (authorize with the access token; a request names its contract by ``symbol``, e.g. "ESM7")
- REF = https://partner.tradovate.com/overview/core-concepts/web-sockets/market-data/market-data-request-reference
  (``md/subscribeQuote`` and its ``{"e":"md","d":{"quotes":[...]}}`` data message;
  ``md/getChart`` / ``md/cancelChart``)
- EX10 = github.com/tradovate/example-api-js tutorial/WebSockets/EX-10-Chart-Data
  (``chartDescription`` / ``timeRange``, the ``{"e":"chart","d":{"charts":[{"id","td","bars"}]}}``
  packets, ``eoh`` closing the history, a bar's fields)
- STAGE5 = https://partner.tradovate.com/overview/conformance-testing/stage-5-market-data-access.md
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from trading.market import Candle
from workers.brokers.tradovate import wsproto
from workers.brokers.tradovate.wsproto import ProtocolError

SUBSCRIBE_QUOTE: Final = "md/subscribeQuote"
GET_CHART: Final = "md/getChart"
CANCEL_CHART: Final = "md/cancelChart"
QUOTE_EVENT: Final = "md"
CHART_EVENT: Final = "chart"


def subscribe_quote(request_id: int, symbol: str) -> str:
    """``md/subscribeQuote`` ``{"symbol": "ESZ6"}`` (REF, "Subscribe Quote")."""
    return wsproto.request(SUBSCRIBE_QUOTE, request_id, "", {"symbol": symbol})


def get_chart(
    request_id: int,
    symbol: str,
    *,
    as_much_as: int | None = None,
    closest: datetime | None = None,
    as_far_as: datetime | None = None,
) -> str:
    """``md/getChart`` for 1-minute bars (REF "Get Chart"; EX10): ``chartDescription``
    ``{underlyingType: "MinuteBar", elementSize: 1, elementSizeUnit: "UnderlyingUnits",
    withHistogram: false}`` and a ``timeRange`` of ``closestTimestamp`` (the newest bar
    wanted), ``asFarAsTimestamp`` (the oldest) and ``asMuchAsElements`` (how many), at least one
    given. Timestamps as ISO-8601 UTC with ``Z`` (EX10 sends ``new Date().toISOString()``)."""
    time_range: dict[str, Any] = {}
    if closest is not None:
        time_range["closestTimestamp"] = iso(closest)
    if as_far_as is not None:
        time_range["asFarAsTimestamp"] = iso(as_far_as)
    if as_much_as is not None:
        time_range["asMuchAsElements"] = int(as_much_as)
    if not time_range:
        raise ValueError("a chart request needs a time range")
    body = {
        "symbol": symbol,
        "chartDescription": {
            "underlyingType": "MinuteBar",
            "elementSize": 1,
            "elementSizeUnit": "UnderlyingUnits",
            "withHistogram": False,
        },
        "timeRange": time_range,
    }
    return wsproto.request(GET_CHART, request_id, "", body)


def cancel_chart(request_id: int, subscription_id: int) -> str:
    """``md/cancelChart`` ``{"subscriptionId": id}`` (REF "Cancel Chart": the id the getChart
    answer gave; assumed: the ``realtimeId``, EX10 cancels with the id it charted under)."""
    return wsproto.request(CANCEL_CHART, request_id, "", {"subscriptionId": subscription_id})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def parse_time(value: object) -> datetime:
    """A timestamp of the docs' form ``"2021-04-13T04:59:06.588Z"`` (REF), aware UTC."""
    if not isinstance(value, str):
        raise ProtocolError("a timestamp is an ISO-8601 string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(f"bad timestamp {value!r}") from None
    if moment.tzinfo is None:
        raise ProtocolError(f"timestamp {value!r} has no zone")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ChartStarted:
    """The getChart answer's ``d``: ``{"historicalId", "realtimeId"}`` (REF; EX10)."""

    historical_id: int
    realtime_id: int


def parse_chart_started(data: object) -> ChartStarted:
    if not isinstance(data, Mapping):
        raise ProtocolError("the getChart answer carries historicalId and realtimeId")
    try:
        return ChartStarted(int(data["historicalId"]), int(data["realtimeId"]))
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("the getChart answer carries historicalId and realtimeId") from None


@dataclass(frozen=True, slots=True)
class Quote:
    """One quote of an ``md`` event (REF "Subscribe Quote" data message): its ``timestamp``,
    ``contractId`` and the ``Bid``/``Offer`` entries' prices (``None`` when absent)."""

    time: datetime
    contract_id: int | None
    bid: Decimal | None
    ask: Decimal | None


def parse_quotes(data: object) -> list[Quote]:
    """``{"quotes": [{timestamp, contractId, entries: {Bid: {price, size}, Offer: {...}, ...}}]}``
    (REF). assumed: an entry without a price (or a quote without Bid/Offer) leaves that side
    unknown."""
    if not isinstance(data, Mapping):
        raise ProtocolError("an md event's d is an object")
    quotes = data.get("quotes")
    if not isinstance(quotes, list):
        return []
    out: list[Quote] = []
    for item in quotes:
        if not isinstance(item, Mapping):
            raise ProtocolError("a quote is an object")
        entries = item.get("entries")
        entries = entries if isinstance(entries, Mapping) else {}
        contract_id = item.get("contractId")
        out.append(
            Quote(
                parse_time(item.get("timestamp")),
                contract_id if isinstance(contract_id, int) else None,
                _price(entries.get("Bid")),
                _price(entries.get("Offer")),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class ChartPacket:
    """One item of a ``chart`` event's ``charts`` (EX10): the subscription ``id`` it belongs to
    (the historicalId while history is sent, then the realtimeId), its bars, or ``eoh`` true
    (end of history)."""

    subscription_id: int
    bars: tuple[Candle, ...] = ()
    eoh: bool = False


def parse_charts(data: object) -> list[ChartPacket]:
    """``{"charts": [{"id", "td", "bars": [...]}, {"id", "eoh": true}]}`` (EX10; REF)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("charts"), list):
        raise ProtocolError("a chart event's d has charts")
    packets: list[ChartPacket] = []
    for item in data["charts"]:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), int):
            raise ProtocolError("a chart packet has an id")
        raw_bars = item.get("bars") or []
        if not isinstance(raw_bars, list):
            raise ProtocolError("a chart packet's bars is a list")
        bars = tuple(sorted((parse_bar(b) for b in raw_bars), key=lambda c: c.start))
        packets.append(ChartPacket(item["id"], bars, item.get("eoh") is True))
    return packets


def parse_bar(item: object) -> Candle:
    """A MinuteBar (EX10): ``{timestamp, open, high, low, close, upVolume, downVolume, upTicks,
    downTicks, bidVolume, offerVolume}``; ``timestamp`` is the bar's start (assumed: the docs
    show the field, not which end of the bar it stamps; a bar stamped 10:03 holds 10:03:00 to
    10:03:59). The docs give no ``volume``: assumed it is ``upVolume + downVolume`` (every
    trade is up or down), a whole number of contracts for futures."""
    if not isinstance(item, Mapping):
        raise ProtocolError("a bar is an object")
    prices = [_number(item.get(k), k) for k in ("open", "high", "low", "close")]
    volume = _number(item.get("upVolume", 0), "upVolume") + _number(
        item.get("downVolume", 0), "downVolume"
    )
    if volume < 0 or volume != volume.to_integral_value():
        raise ProtocolError(f"bar volume {volume} is not a whole number of contracts")
    start = parse_time(item.get("timestamp")).replace(second=0, microsecond=0)
    return Candle(start, prices[0], prices[1], prices[2], prices[3], int(volume))


def _number(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ProtocolError(f"bar field {name} is not a number")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ProtocolError(f"bar field {name} is not a number") from None
    if not number.is_finite():
        raise ProtocolError(f"bar field {name} is not finite")
    return number


def _price(entry: object) -> Decimal | None:
    if not isinstance(entry, Mapping):
        return None
    value = entry.get("price")
    if value is None or isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return None
    try:
        price = Decimal(value)
    except InvalidOperation:
        return None
    return price if price.is_finite() and price > 0 else None
