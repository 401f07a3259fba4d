"""wsproto against the frames Tradovate documents (sources in the module's docstring)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from workers.brokers.tradovate import wsproto
from workers.brokers.tradovate.wsproto import (
    CloseFrame,
    DataFrame,
    Event,
    HeartbeatFrame,
    OpenFrame,
    PropsEvent,
    ProtocolError,
    Response,
)

# https://partner.tradovate.com/overview/conformance-testing/stage-2-websocket-management
# (authorize's answer {"i": 0, "s": 200}); example-api-js EX-06-Heartbeats (o, h, a, c).
AUTH_OK = 'a[{"s":200,"i":0}]'
# example-api-faq user-sync-request index.js: a props event's d has entityType, entity,
# eventType; assumed: the fill's fields as in the shared contract (Fill{id, orderId, ...}).
FILL_EVENT = (
    'a[{"e":"props","d":{"entityType":"fill","eventType":"Created","entity":'
    '{"id":7,"orderId":42,"contractId":3,"timestamp":"2013-10-07T13:30:00Z",'
    '"action":"Buy","qty":1,"price":1680.25,"active":true}}}]'
)


def test_open_and_heartbeat_frames() -> None:
    assert wsproto.parse_frame("o") == OpenFrame()
    assert wsproto.parse_frame("h") == HeartbeatFrame()
    assert wsproto.parse_frame(b"h") == HeartbeatFrame()


def test_a_response() -> None:
    frame = wsproto.parse_frame(AUTH_OK)
    assert frame == DataFrame((Response(200, 0, None),))
    assert isinstance(frame, DataFrame) and isinstance(frame.messages[0], Response)
    assert frame.messages[0].ok


def test_a_refused_authorize_is_not_ok() -> None:
    frame = wsproto.parse_frame('a[{"s":401,"i":0,"d":"Access is denied"}]')
    assert isinstance(frame, DataFrame)
    (answer,) = frame.messages
    assert isinstance(answer, Response)
    assert not answer.ok and answer.data == "Access is denied"


def test_a_props_event_with_decimal_prices() -> None:
    frame = wsproto.parse_frame(FILL_EVENT)
    assert isinstance(frame, DataFrame)
    (event,) = frame.messages
    assert isinstance(event, Event) and event.name == "props"
    props = wsproto.parse_props(event)
    assert props.entity_type == "fill" and props.event_type == "Created"
    assert props.entity["orderId"] == 42
    assert props.entity["price"] == Decimal("1680.25")


def test_several_messages_in_one_frame_keep_their_order() -> None:
    raw = (
        'a[{"e":"props","d":{"entityType":"order","eventType":"Updated","entity":{"id":1}}},'
        '{"s":200,"i":5,"d":[]}]'
    )
    frame = wsproto.parse_frame(raw)
    assert isinstance(frame, DataFrame)
    assert [type(m) for m in frame.messages] == [Event, Response]


def test_close_frame() -> None:
    assert wsproto.parse_frame('c[1000,"Normal closure"]') == CloseFrame(1000, "Normal closure")
    assert wsproto.parse_frame("c") == CloseFrame(0, "")


@pytest.mark.parametrize("raw", ["", "x", "a{", 'a{"s":200}', "a[1]", 'a[{"x":1}]', "c{}"])
def test_malformed_frames_are_refused(raw: str) -> None:
    with pytest.raises(ProtocolError):
        wsproto.parse_frame(raw)


def test_props_needs_entity_type_and_entity() -> None:
    with pytest.raises(ProtocolError):
        wsproto.parse_props(Event("props", {"eventType": "Created"}))
    with pytest.raises(ProtocolError):
        wsproto.parse_props(Event("md", {"entityType": "fill", "entity": {}}))


def test_requests() -> None:
    # https://partner.tradovate.com/api/rest-api-endpoints/users/sync-request (its example)
    assert wsproto.authorize(0, "tok") == "authorize\n0\n\ntok"
    assert wsproto.sync_request(1, [12345], None) == 'user/syncrequest\n1\n\n{"users":[12345]}'
    endpoint, rid, query, body = wsproto.sync_request(1, [9], ["order", "fill"]).split("\n")
    assert (endpoint, rid, query) == ("user/syncrequest", "1", "")
    assert json.loads(body) == {"users": [9], "entityTypes": ["order", "fill"]}
    assert wsproto.request("order/item", 3, "id=4") == "order/item\n3\nid=4\n"
    assert wsproto.HEARTBEAT == "[]"
    with pytest.raises(ProtocolError):
        wsproto.request("bad\nendpoint", 1)


def test_snapshot_entities_from_a_sync_answer() -> None:
    # example-api-faq user-sync-request index.js: the initial answer's keys
    snapshot = {
        "users": [{"id": 9}],
        "accounts": [{"id": 100, "name": "DEMO0001", "userId": 9}],
        "orders": [{"id": 42, "accountId": 100}],
        "fills": [],
        "contractGroups": None,
    }
    got = wsproto.snapshot_entities(snapshot)
    assert PropsEvent("account", "Snapshot", {"id": 100, "name": "DEMO0001", "userId": 9}) in got
    assert PropsEvent("order", "Snapshot", {"id": 42, "accountId": 100}) in got
    assert len(got) == 3
    assert wsproto.snapshot_entities(None) == []
