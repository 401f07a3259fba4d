"""JSON on the wire with exact decimals, and the WebSocket frames.

Every number that is money or a price is a ``Decimal`` inside the server and is written as a
JSON number with its exact digits (``1801.25``, never a binary float); JSON read from clients is
parsed with ``parse_float=Decimal``.

Frames (https://github.com/tradovate/example-api-js, tutorial/WebSockets/EX-06-Heartbeats):
``o`` open, ``h`` heartbeat, ``a[...]`` a JSON array of messages, ``c[code,"reason"]`` close.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def dumps(value: Any) -> str:
    """JSON text of ``value``; ``Decimal`` as an exact number, ``datetime`` as ISO-8601 UTC."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, (bool, str)):
        out.append(json.dumps(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a non-finite decimal cannot go on the wire")
        out.append(format(value, "f"))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(json.dumps(value))
    elif isinstance(value, datetime):
        out.append(json.dumps(iso(value)))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as Tradovate writes timestamps
    (e.g. ``"2021-04-13T04:59:06.588Z"``, market-data-request-reference)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime on the wire")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame(messages: list[Any]) -> str:
    """An ``a`` frame carrying ``messages``."""
    return "a" + dumps(messages)


def close_frame(code: int, reason: str) -> str:
    return "c" + dumps([code, reason])


def response(request_id: int, status: int, data: Any = None) -> dict[str, Any]:
    """A response message ``{"s", "i", "d"}`` (connection-overview / stage-2-websocket-management:
    https://partner.tradovate.com/overview/conformance-testing/stage-2-websocket-management)."""
    message: dict[str, Any] = {"s": status, "i": request_id}
    if data is not None:
        message["d"] = data
    return message
