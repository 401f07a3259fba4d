"""Tradovate's WebSocket wire format, pure: server frames in, client requests out.

No I/O here: ``workers.brokers.tradovate.usersync`` owns the socket. Every shape names the
page it comes from; ``assumed:`` marks a choice where the docs say nothing.

Sources:
- WS guide: https://partner.tradovate.com/overview/core-concepts/web-sockets/connection-overview
- user sync: https://partner.tradovate.com/overview/core-concepts/web-sockets/user-syncrequest
  and https://partner.tradovate.com/api/rest-api-endpoints/users/sync-request
- best practices (heartbeat every 2.5 s):
  https://partner.tradovate.com/resources/reference/best-practices
- conformance stage 2 (authorize, its 200/401 answer):
  https://partner.tradovate.com/overview/conformance-testing/stage-2-websocket-management
- the public examples: github.com/tradovate/example-api-js
  ``tutorial/WebSockets/EX-06-Heartbeats/README.md`` (frame kinds o/h/a/c, ``[]`` every 2.5 s)
  and github.com/tradovate/example-api-faq ``example-code/user-sync-request/src`` (the sync
  snapshot's keys; a props event carries entityType, eventType, entity).

Numbers inside ``d`` are parsed as ``Decimal`` (prices and cash), integers stay ``int``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

HEARTBEAT: Final = "[]"
"""The client's heartbeat frame: an empty JSON array, sent every ``HEARTBEAT_INTERVAL_S``
(example-api-js EX-06-Heartbeats; best practices: "Send heartbeats every 2.5 seconds")."""
HEARTBEAT_INTERVAL_S: Final = 2.5
SERVER_SILENCE_LIMIT_S: Final = 10.0
"""assumed: the docs give the 2.5 s cadence but no figure after which a silent peer is dead;
we take four missed server heartbeats (10 s), the figure of the shared contract."""

AUTHORIZE: Final = "authorize"
SYNC_REQUEST: Final = "user/syncrequest"
PROPS: Final = "props"

SYNC_ENTITY_TYPES: Final = (
    "account",
    "order",
    "fill",
    "position",
    "command",
    "orderVersion",
    "cashBalance",
)
"""What a sync asks for when it names ``entityTypes`` (user-syncrequest guide: "You must
specify entityTypes now; the default is an empty array"). The SyncMessage's keys are the
plurals (sync-request reference: accounts, positions, orders, fills, commands, orderVersions,
cashBalances, ...)."""


class ProtocolError(ValueError):
    """A frame or message that matches none of the documented shapes."""


# ----------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class OpenFrame:
    """``o``: the server accepted the socket; the client authorizes next (EX-06: "case 'o'")."""


@dataclass(frozen=True, slots=True)
class HeartbeatFrame:
    """``h``: the server's heartbeat (EX-06: "case 'h'")."""


@dataclass(frozen=True, slots=True)
class DataFrame:
    """``a[...]``: a JSON array of messages (EX-06: ``JSON.parse(msg.data.slice(1))``)."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """``c[code,"reason"]``: the server closes (EX-06: "case 'c'"). assumed: the payload is
    a two-item JSON array code, reason, as in SockJS, whose framing Tradovate's follows; a
    bare ``c`` gives code 0 and an empty reason."""

    code: int
    reason: str


Frame = OpenFrame | HeartbeatFrame | DataFrame | CloseFrame


# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to request ``i``: ``{"s": status, "i": id, "d": data}`` (conformance stage 2:
    ``{"i": 0, "s": 200}`` for authorize; example-api-faq tvSocket.js ``item.s === 200``)."""

    status: int
    request_id: int
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class Event:
    """A pushed event: ``{"e": name, "d": data}`` (example-api-faq tvSocket.js
    ``data?.e === 'props'``)."""

    name: str
    data: Any = None


Message = Response | Event


@dataclass(frozen=True, slots=True)
class PropsEvent:
    """A ``props`` event's data: one entity created, updated or deleted (example-api-faq
    user-sync-request index.js: ``const { entityType, entity, eventType } = item``).
    assumed: eventType is one of Created / Updated / Deleted (the shared contract); another
    value is kept as it comes."""

    entity_type: str
    event_type: str
    entity: Mapping[str, Any] = field(default_factory=dict)


def parse_frame(raw: str | bytes) -> Frame:
    """One server frame, by its first character (EX-06's "message discriminator")."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not text:
        raise ProtocolError("empty frame")
    kind, rest = text[0], text[1:]
    if kind == "o":
        return OpenFrame()
    if kind == "h":
        return HeartbeatFrame()
    if kind == "a":
        items = _json(rest)
        if not isinstance(items, list):
            raise ProtocolError("an 'a' frame carries a JSON array")
        return DataFrame(tuple(parse_message(item) for item in items))
    if kind == "c":
        if not rest:
            return CloseFrame(0, "")
        payload = _json(rest)
        if isinstance(payload, list) and payload:
            code = payload[0] if isinstance(payload[0], int) else 0
            reason = str(payload[1]) if len(payload) > 1 else ""
            return CloseFrame(code, reason)
        raise ProtocolError("a 'c' frame carries [code, reason]")
    raise ProtocolError(f"unknown frame kind {kind!r}")


def parse_message(item: object) -> Message:
    """One item of an ``a`` frame: a response (has ``i``) or an event (has ``e``)."""
    if not isinstance(item, dict):
        raise ProtocolError("a message is a JSON object")
    if "e" in item:
        return Event(str(item["e"]), item.get("d"))
    if "i" in item and "s" in item:
        try:
            return Response(int(item["s"]), int(item["i"]), item.get("d"))
        except (TypeError, ValueError):
            raise ProtocolError("a response's s and i are numbers") from None
    raise ProtocolError("a message has either e (event) or s and i (response)")


def parse_props(event: Event) -> PropsEvent:
    """The entity of a ``props`` event."""
    data = event.data
    if event.name != PROPS or not isinstance(data, dict):
        raise ProtocolError("not a props event")
    entity = data.get("entity")
    entity_type = data.get("entityType")
    if not isinstance(entity_type, str) or not isinstance(entity, dict):
        raise ProtocolError("a props event has entityType and entity")
    return PropsEvent(entity_type, str(data.get("eventType", "")), entity)


def snapshot_entities(data: object) -> list[PropsEvent]:
    """The entities of a sync answer (its ``d``), as if each had just been created, so that
    one callback sees the snapshot and the events alike. The SyncMessage's keys are plurals
    of the entity types (sync-request reference; example-api-faq user-sync-request
    index.js); assumed: the entity type of key ``orders`` is ``order`` (the key less its
    trailing "s"), and eventType ``Snapshot`` marks these."""
    if not isinstance(data, dict):
        return []
    out: list[PropsEvent] = []
    for key, items in data.items():
        if not isinstance(items, list) or not key.endswith("s"):
            continue
        entity_type = key[:-1]
        out.extend(PropsEvent(entity_type, "Snapshot", item) for item in items if _is_obj(item))
    return out


# ----------------------------------------------------------------------------- requests


def request(endpoint: str, request_id: int, query: str = "", body: object | str = "") -> str:
    """``endpoint\\nid\\nquery\\nbody`` (architecture overview: "new-line delimited (\\n),
    where each line represents a separate parameter"; sync-request reference:
    ``user/syncrequest\\n1\\n\\n{...}``). A non-string body is sent as JSON."""
    if "\n" in endpoint or "\n" in query:
        raise ProtocolError("endpoint and query are single lines")
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return f"{endpoint}\n{request_id}\n{query}\n{text}"


def authorize(request_id: int, access_token: str) -> str:
    """``authorize\\n0\\n\\n<token>`` (conformance stage 2; sync-request reference): the body
    is the bare token, not JSON. The frame holds a secret: never log it."""
    return request(AUTHORIZE, request_id, "", access_token)


def sync_request(
    request_id: int, user_ids: Sequence[int], entity_types: Sequence[str] | None = None
) -> str:
    """``user/syncrequest`` with ``{"users": [...]}`` (sync-request reference's example;
    example-api-faq ``body: { users: [userId] }``). With ``entity_types``, also
    ``"entityTypes"`` (user-syncrequest guide: "You must specify entityTypes now; the
    default is an empty array"). assumed: ``splitResponses`` (the guide: "should be true for
    any B2B vendor") is left out: we are no vendor, and a split answer's shape is not
    documented."""
    body: dict[str, object] = {"users": [int(u) for u in user_ids]}
    if entity_types is not None:
        body["entityTypes"] = list(entity_types)
    return request(SYNC_REQUEST, request_id, "", body)


# ----------------------------------------------------------------------------- helpers


def _json(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc.msg}") from None


def _is_obj(item: object) -> bool:
    return isinstance(item, dict)
