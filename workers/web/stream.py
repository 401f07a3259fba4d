"""Server-sent events: the fleet and one session, a fresh snapshot about every second.

``GET /stream/fleet`` and ``GET /stream/sessions/{id}`` answer ``text/event-stream``. The
stream opens with ``retry: 3000`` (the browser reconnects after 3 s if it drops), then sends,
about every ``INTERVAL_S``, one event::

    id: <n>
    event: snapshot
    data: <one line of JSON>

with the data of ``/api/fleet`` (``{"type": "fleet", "as_of", "sessions": [...],
"accounts": [...]}``) or the session's live part (``{"type": "session", "session",
"last_closed", "partial", "stop_price", "markers"}``); each session carries ``cells``, the
texts of its row's live cells (``workers.web.views``). A snapshot that cannot be read (Redis
or the database not answering) is an ``event: problem`` with ``{"error": "..."}`` instead,
and the stream goes on. Each snapshot is read on the thread pool; the stream ends when the
client goes away, and when its login ends (expired, logged out, its user deleted or given a new
password: checked again before every snapshot), with a last ``problem`` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from workers.operations.fleet import fleet_view
from workers.operations.session_view import require_session, session_live
from workers.runtime import Runtime
from workers.web.auth import User, current_user, login_checker
from workers.web.deps import runtime
from workers.web.serialize import dumps
from workers.web.views import fleet_snapshot, session_snapshot

log = logging.getLogger(__name__)
router = APIRouter()

INTERVAL_S = 1.0
RETRY_MS = 3_000
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Reader = Annotated[User, Depends(current_user)]
Rt = Annotated[Runtime, Depends(runtime)]
Alive = Annotated[Callable[[Request], bool], Depends(login_checker)]


def event(name: str, data: Any, event_id: int) -> str:
    """One server-sent event (its data is one line of JSON)."""
    return f"id: {event_id}\nevent: {name}\ndata: {dumps(data)}\n\n"


async def snapshots(
    request: Request,
    read: Callable[[], dict[str, Any]],
    alive: Callable[[Request], bool],
    interval_s: float = INTERVAL_S,
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    sent = 0
    while not await request.is_disconnected():
        if not await run_in_threadpool(alive, request):
            yield event("problem", {"error": "the login ended: log in again"}, sent)
            return
        sent += 1
        try:
            data = await run_in_threadpool(read)
        except Exception as exc:
            log.warning("console stream %s: %s", request.url.path, exc)
            yield event("problem", {"error": f"{type(exc).__name__}: {exc}"[:300]}, sent)
        else:
            yield event("snapshot", data, sent)
        await asyncio.sleep(interval_s)


def sse(
    request: Request, read: Callable[[], dict[str, Any]], alive: Callable[[Request], bool]
) -> StreamingResponse:
    return StreamingResponse(
        snapshots(request, read, alive), media_type="text/event-stream", headers=HEADERS
    )


@router.get("/stream/fleet")
def fleet_stream(request: Request, _: Reader, rt: Rt, alive: Alive) -> StreamingResponse:
    return sse(request, lambda: fleet_snapshot(fleet_view(rt)), alive)


@router.get("/stream/sessions/{session_id}")
def session_stream(
    session_id: str, request: Request, _: Reader, rt: Rt, alive: Alive
) -> StreamingResponse:
    require_session(rt, session_id)
    return sse(request, lambda: session_snapshot(session_live(rt, session_id)), alive)


__all__ = ["INTERVAL_S", "event", "router", "snapshots"]
