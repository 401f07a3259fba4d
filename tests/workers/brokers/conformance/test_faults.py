"""The broker's faults, as the fleet meets them through the protocol (issue #16, points 4/5).

Tradovate's faults are armed at the local Tradovate server (``POST /_local/faults``) and what
the server saw is read back from ``GET /_local/state`` (its orders, commands, fills, and the
REST requests it answered per path). Each test runs over every venue of ``venues.py``; a fault
that has no meaning at the paper broker (it fills every order whole, has no tokens, no rate
limit, no reject switch) is skipped there, with the reason. A broker outage (Tradovate's
maintenance window; the paper broker's store unreachable) runs on both.

The adapter's waits (penalty tickets, 429) go through the ``sleep`` its REST client takes:
a test records them (and sleeps for real only where the server checks the wait: a p-ticket
sent back early earns another).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.kit.tradovate_local import PASSWORD, SEC
from tests.workers.brokers.conformance.test_protocol import (
    all_fills,
    fills_of,
    order,
    positions,
    status,
    stop,
)
from tests.workers.brokers.conformance.venues import (
    PaperVenue,
    TradovateVenue,
    Venue,
    at,
    tradovate_settings,
)
from trading.exceptions import ServiceUnavailable
from trading.intents import client_order_id
from trading.stops import attached_stop_id
from workers.brokers import (
    FILLS_START,
    CancelOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
)
from workers.brokers.tradovate.auth import Tokens
from workers.brokers.tradovate.broker import TradovateBroker
from workers.brokers.tradovate.rest import MAX_RETRIES, RestClient

pytestmark = pytest.mark.integration

SESSION = "conf-sess-1"


@pytest.fixture(params=["paper", "tradovate"])
def venue(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Venue]:
    made: Venue = (
        PaperVenue(redis_url) if request.param == "paper" else TradovateVenue(redis_url, tmp_path)
    )
    yield made
    made.close()


def tradovate_only(why_not_paper: str) -> pytest.MarkDecorator:
    """Run the test on Tradovate only: the fault has no meaning at the paper broker."""
    return pytest.mark.parametrize(
        "venue",
        [pytest.param("paper", marks=pytest.mark.skip(reason=why_not_paper)), "tradovate"],
        indirect=True,
    )


def server_of(venue: Venue) -> TradovateVenue:
    assert isinstance(venue, TradovateVenue)
    return venue


def arm(venue: Venue, **faults: Any) -> None:
    server_of(venue).server.control("POST", "faults", faults)


def truth(venue: Venue) -> dict[str, Any]:
    """The local server's whole state (``/_local/state``)."""
    state: dict[str, Any] = server_of(venue).server.control("GET", "state")
    return state


def requests_seen(venue: Venue, path: str) -> int:
    """How many REST requests the server answered (or refused) on ``path``."""
    return int(truth(venue)["requests"].get(path.lower(), 0))


def new_commands(venue: Venue, coid: str) -> int:
    """How many orders the server was asked to create with client order id ``coid``."""
    commands = truth(venue)["commands"]
    return sum(1 for c in commands if c.get("clOrdId") == coid and c["commandType"] == "New")


class Waits:
    """The adapter's injected ``sleep``: records every wait; sleeps for real only if told."""

    def __init__(self, real: bool = False) -> None:
        self.waits: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            time.sleep(seconds)


def broker_with(venue: Venue, sleep: Callable[[float], None]) -> TradovateBroker:
    """A Tradovate broker on the venue's server whose REST client waits through ``sleep``,
    with a token store of its own (nothing cached: its first call requests a token)."""
    tv = server_of(venue)
    settings = tradovate_settings(tv.server)
    rest = RestClient(settings.rest_url, timeout_s=settings.timeout_s, sleep=sleep)
    tokens = Tokens(settings, rest, tv.market, sleep=sleep)
    tv.market.delete(tokens.key)
    return TradovateBroker(rest, tokens, tv.market, tv.account)


# --------------------------------------------------------------------------- partial fills


@tradovate_only("the paper broker fills every order whole: it has no partial fills")
def test_an_order_filling_in_parts_gives_one_fill_per_part(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    arm(venue, partial_fills=3)
    ack = venue.broker.place_order(order(venue, "p1", quantity=3))
    assert ack.status in {"working", "filled"}
    seen: list[str] = []
    cursor = FILLS_START
    for part, (when, price) in enumerate(((1, "1800.00"), (2, "1800.25"), (3, "1800.50")), 1):
        if part > 1:
            venue.trade(at(when), price)
        fills = fills_of(venue, part)
        assert len(fills) == part
        new, cursor = venue.broker.fills_since(venue.account, cursor)
        assert [f.execution_id for f in new] == [fills[-1].execution_id], "each part read once"
        seen.append(new[0].execution_id)
        (fill,) = new
        assert (fill.client_order_id, fill.broker_order_id) == ("p1", ack.broker_order_id)
        assert (fill.quantity, fill.price, fill.time) == (1, Decimal(price), at(when))
        answer = venue.broker.order(QueryOrder(venue.account, "p1"))
        assert answer is not None
        assert (answer.quantity, answer.filled_quantity) == (3, part)
        assert answer.status == ("filled" if part == 3 else "working")
        assert positions(venue) == {"ESZ13": part}
    assert len(set(seen)) == 3, "every part has its own execution id"
    final = venue.broker.order(QueryOrder(venue.account, "p1"))
    assert final is not None and final.average_fill_price == Decimal("1800.25")
    assert venue.broker.open_orders(QueryOpenOrders(venue.account)) == []
    assert venue.broker.fills_since(venue.account, cursor) == ([], cursor)
    assert new_commands(venue, "p1") == 1


# --------------------------------------------------------------------------- tokens


@tradovate_only("the paper broker has no access tokens to expire")
def test_an_expired_token_is_replaced_on_the_next_call_and_never_logged(
    venue: Venue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert isinstance(venue.broker, TradovateBroker)
    tokens = venue.broker.api.tokens
    venue.trade(at(1), "1800.00")
    venue.broker.place_order(order(venue, "t1"))
    fills_of(venue, 1)
    old = tokens.access_token()
    requested = requests_seen(venue, "auth/accesstokenrequest")
    asked = requests_seen(venue, "position/list")

    arm(venue, expire_tokens=True)
    assert positions(venue) == {"ESZ13": 1}
    new = tokens.access_token()
    assert new != old
    assert requests_seen(venue, "auth/accesstokenrequest") == requested + 1
    assert requests_seen(venue, "position/list") == asked + 2, "one 401, then one success"

    venue.broker.place_order(order(venue, "t2", "sell", decided_at=at(1.5)))
    fills_of(venue, 2)
    assert positions(venue) == {}
    assert requests_seen(venue, "auth/accesstokenrequest") == requested + 1, "token reused"

    logged = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    logged += server_of(venue).server.log.read_text(errors="replace")
    for secret in (PASSWORD, SEC, old, new):
        assert secret not in logged
    assert old not in repr(tokens._local) and new not in repr(tokens._local)


@tradovate_only("the paper broker needs no access token")
def test_a_penalty_ticket_on_the_token_request_is_waited_out(venue: Venue) -> None:
    waits = Waits(real=True)  # the server refuses a ticket sent back before its p-time
    broker = broker_with(venue, waits)
    requested = requests_seen(venue, "auth/accesstokenrequest")
    arm(venue, p_ticket={"count": 1, "seconds": 1})
    assert broker.positions(QueryPositions(venue.account)) == {}
    assert waits.waits == [1.0]
    assert requests_seen(venue, "auth/accesstokenrequest") == requested + 2


@tradovate_only("the paper broker needs no access token")
def test_a_penalty_ticket_with_a_captcha_ends_in_one_clear_failure(venue: Venue) -> None:
    waits = Waits()
    broker = broker_with(venue, waits)
    requested = requests_seen(venue, "auth/accesstokenrequest")
    arm(venue, p_ticket={"count": 5, "seconds": 1, "captcha": True})
    with pytest.raises(ServiceUnavailable, match="captcha") as failure:
        broker.positions(QueryPositions(venue.account))
    assert waits.waits == [], "a captcha is not waited out: an operator must act"
    assert requests_seen(venue, "auth/accesstokenrequest") == requested + 1
    assert PASSWORD not in str(failure.value) and SEC not in str(failure.value)
    assert requests_seen(venue, "position/list") == 0, "nothing asked without a token"


# --------------------------------------------------------------------------- 429


@tradovate_only("the paper broker has no rate limit")
def test_429_backs_off_a_bounded_number_of_times(venue: Venue) -> None:
    waits = Waits()
    broker = broker_with(venue, waits)
    assert broker.positions(QueryPositions(venue.account)) == {}  # token and account id in hand
    asked = requests_seen(venue, "position/list")

    arm(venue, rate_limit={"count": 2})
    assert broker.positions(QueryPositions(venue.account)) == {}
    assert waits.waits == [1.0, 2.0], "exponential back-off from 1 s"
    assert requests_seen(venue, "position/list") == asked + 3

    waits.waits.clear()
    arm(venue, rate_limit={"count": 1, "retry_after": 7})
    assert broker.positions(QueryPositions(venue.account)) == {}
    assert waits.waits == [7.0], "the server's Retry-After is honoured"
    assert requests_seen(venue, "position/list") == asked + 5

    waits.waits.clear()
    arm(venue, rate_limit={"count": 100})
    with pytest.raises(ServiceUnavailable, match="429"):
        broker.positions(QueryPositions(venue.account))
    assert waits.waits == [1.0, 2.0, 4.0, 8.0][:MAX_RETRIES]
    assert all(w >= 1.0 for w in waits.waits), "never a tight loop"
    assert requests_seen(venue, "position/list") == asked + 5 + MAX_RETRIES + 1
    server_of(venue).server.control("DELETE", "faults")
    assert broker.positions(QueryPositions(venue.account)) == {}


@tradovate_only("the paper broker has no rate limit")
def test_429_on_a_place_places_the_order_once(venue: Venue) -> None:
    waits = Waits()
    broker = broker_with(venue, waits)
    venue.trade(at(1), "1800.00")
    assert broker.positions(QueryPositions(venue.account)) == {}
    arm(venue, rate_limit={"count": 3})
    ack = broker.place_order(order(venue, "q1"))
    assert len(waits.waits) == 3
    assert ack.status == "filled"
    assert new_commands(venue, "q1") == 1
    assert positions(venue) == {"ESZ13": 1}


# --------------------------------------------------------------------------- rejects


@tradovate_only("the paper broker has no reject switch: it refuses no well-formed order")
def test_a_rejected_order_leaves_nothing_working(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    arm(venue, reject_next_order={"reason": "UnknownReason", "text": "local fault: refused"})
    ack = venue.broker.place_order(order(venue, "x1"))
    assert (ack.client_order_id, ack.status, ack.duplicate) == ("x1", "rejected", False)
    assert venue.broker.open_orders(QueryOpenOrders(venue.account)) == []
    assert status(venue, "x1") != "working"
    assert positions(venue) == {}
    assert all_fills(venue) == []

    entry_id = client_order_id(SESSION, 3, 0)
    stop_id = attached_stop_id(entry_id)
    protective = stop(venue, stop_id, "1790.00", parent_client_order_id=entry_id)
    arm(venue, reject_next_order={"reason": "UnknownReason"})
    bracket = venue.broker.place_order(order(venue, entry_id, attached_stop=protective))
    assert bracket.status == "rejected"
    assert venue.broker.open_orders(QueryOpenOrders(venue.account)) == []
    assert status(venue, stop_id) != "working"
    assert [o for o in truth(venue)["orders"] if o["ordStatus"] != "Rejected"] == []

    venue.broker.place_order(order(venue, "x2"))  # the fault was one order only
    (fill,) = fills_of(venue, 1)
    assert fill.client_order_id == "x2"
    assert positions(venue) == {"ESZ13": 1}


# --------------------------------------------------------------------------- maintenance


def test_an_outage_fails_every_call_and_is_never_read_flat(venue: Venue) -> None:
    """Tradovate's maintenance window (its queries answer 503); the paper broker's store
    unreachable. Every query raises; at Tradovate a place or a cancel in the window raises too
    (nothing is answered rejected, unknown or flat); afterwards the truth is exact and the
    order tried in the window is placed once."""
    venue.trade(at(1), "1800.00")
    venue.broker.place_order(order(venue, "w1"))
    venue.broker.place_order(
        order(venue, "w2", kind="limit", limit_price=Decimal("1700.00"), decided_at=at(1.5))
    )
    fills_of(venue, 1)
    calls: list[Callable[[], object]] = [
        lambda: venue.broker.positions(QueryPositions(venue.account)),
        lambda: venue.broker.open_orders(QueryOpenOrders(venue.account)),
        lambda: venue.broker.order(QueryOrder(venue.account, "w1")),
        lambda: venue.broker.fills_since(venue.account, FILLS_START),
        lambda: venue.broker.balance(QueryBalance(venue.account)),
    ]
    if isinstance(venue, TradovateVenue):
        # The paper venue's outage cuts its queries only (its scripts keep their own client).
        calls += [
            lambda: venue.broker.place_order(order(venue, "w3", decided_at=at(1.5))),
            lambda: venue.broker.cancel_order(CancelOrder(venue.account, "w2")),
        ]
    with venue.outage():
        for call in calls:
            with pytest.raises(ServiceUnavailable):
                call()
    assert positions(venue) == {"ESZ13": 1}
    resting = venue.broker.open_orders(QueryOpenOrders(venue.account))
    assert [o.client_order_id for o in resting] == ["w2"]
    venue.trade(at(2), "1800.50")
    ack = venue.broker.place_order(order(venue, "w3", decided_at=at(1.5)))
    assert not ack.duplicate
    fills = fills_of(venue, 2)
    assert [f.client_order_id for f in fills] == ["w1", "w3"]
    assert positions(venue) == {"ESZ13": 2}
    if isinstance(venue, TradovateVenue):
        assert new_commands(venue, "w3") == 1
