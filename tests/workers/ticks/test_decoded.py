"""The tick step's decoded fields (``workers.ticks.decoded``): one slot per session and field,
never a value for another text or another session."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from models.codec import encode_field
from trading.market import Candle
from workers.ticks import decoded as cache

START = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)


def candle(close: str) -> Candle:
    price = Decimal(close)
    return Candle(START, price, price, price, price, 1)


def test_a_slot_serves_its_text_only_and_follows_a_changed_text() -> None:
    first = encode_field("latest_partial_candle", candle("100.25"))
    second = encode_field("latest_partial_candle", candle("101.50"))
    a = cache.decoded("s-a", "latest_partial_candle", first)
    assert cache.decoded("s-a", "latest_partial_candle", first) is a, "same text: kept value"
    b = cache.decoded("s-a", "latest_partial_candle", second)
    assert b == candle("101.50"), "a text written by another worker is decoded again"
    assert cache.decoded("s-b", "latest_partial_candle", first) == candle("100.25")
    assert cache.decoded("s-a", "latest_partial_candle", second) is b


def test_an_encoded_value_is_read_back_without_decoding_and_the_cache_stays_bounded() -> None:
    value = candle("99.75")
    text = cache.encoded("s-enc", "latest_partial_candle", value)
    assert text == encode_field("latest_partial_candle", value)
    assert cache.decoded("s-enc", "latest_partial_candle", text) is value

    def refuse(raw: str) -> object:
        raise AssertionError(f"decoded again: {raw}")

    assert cache.decoded("s-enc", "latest_partial_candle", text, refuse) is value
    for n in range(cache.MAX_SLOTS + 1):
        cache.remember(f"s{n}", "trading", "true", True)
    assert len(cache._SLOTS) <= cache.MAX_SLOTS
