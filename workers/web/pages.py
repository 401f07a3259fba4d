"""The console's pages and their JSON API (GET only; the actions are ``POST`` elsewhere).

| page | JSON |
|---|---|
| ``/`` the fleet | ``/api/fleet`` |
| ``/sessions/{id}`` one session | ``/api/sessions/{id}`` |
| ``/accounts`` | ``/api/accounts`` |
| ``/rolls`` | ``/api/rolls`` |
| ``/events?kind=&severity=&session=`` | ``/api/events?...`` |

Every route needs a logged-in user (``current_user``); action forms are rendered only for a
user who may act. Reading never writes: an unknown session raises ``UnknownSession``, a bad
events filter ``BadInput`` (the app's error handlers answer 404 and 400). Handlers are plain
functions: FastAPI runs them on its thread pool, since the reads block (SQL, Redis).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from models.tables import EVENT_KINDS, SEVERITIES
from workers.operations.account_view import accounts_view
from workers.operations.fleet import fleet_view
from workers.operations.log_view import event_filter, events_view, rolls_view
from workers.operations.session_view import session_detail
from workers.runtime import Runtime
from workers.web import stream
from workers.web.auth import User, csrf_token, current_user
from workers.web.deps import TEMPLATES, runtime, settings
from workers.web.serialize import account_json, detail_json, event_json, roll_json
from workers.web.views import fleet_snapshot, percent, session_cells, totals_cells, when

router = APIRouter()
router.include_router(stream.router)


def page_context(request: Request, user: User, csrf: str) -> dict[str, Any]:
    """What every page's template gets: the request, the user, the CSRF token of the action
    forms and the Flower link (the flash message an action redirected with is the base
    template's, ``workers.web.flash``)."""
    return {
        "request": request,
        "user": user,
        "csrf": csrf,
        "flower_url": settings(request).web.flower_url,
    }


def common(
    request: Request,
    user: Annotated[User, Depends(current_user)],
    csrf: Annotated[str, Depends(csrf_token)],
) -> dict[str, Any]:
    return page_context(request, user, csrf)


Context = Annotated[dict[str, Any], Depends(common)]
Rt = Annotated[Runtime, Depends(runtime)]
Reader = Annotated[User, Depends(current_user)]


def render(name: str, context: dict[str, Any], **extra: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(context["request"], name, {**context, **extra})


TEMPLATES.env.filters["percent"] = percent
TEMPLATES.env.filters["when"] = when


# --------------------------------------------------------------------------- fleet


@router.get("/", response_class=HTMLResponse)
def fleet_page(context: Context, rt: Rt) -> HTMLResponse:
    return render("fleet.html", context, fleet=fleet_snapshot(fleet_view(rt)))


@router.get("/api/fleet")
def fleet_api(_: Reader, rt: Rt) -> dict[str, Any]:
    return fleet_snapshot(fleet_view(rt))


# --------------------------------------------------------------------------- one session


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
def session_page(session_id: str, context: Context, rt: Rt) -> HTMLResponse:
    data = detail_json(session_detail(rt, session_id))
    data["session"]["cells"] = session_cells(data["session"])
    return render("session.html", context, data=data, s=data["session"])


@router.get("/api/sessions/{session_id}")
def session_api(session_id: str, _: Reader, rt: Rt) -> dict[str, Any]:
    data = detail_json(session_detail(rt, session_id))
    data["session"]["cells"] = session_cells(data["session"])
    return data


# --------------------------------------------------------------------------- accounts


def _accounts(rt: Runtime) -> list[dict[str, Any]]:
    views = [account_json(view) for view in accounts_view(rt, fleet_view(rt))]
    for view in views:
        if view["totals"] is not None:
            view["totals"]["cells"] = totals_cells(view["totals"])
    return views


@router.get("/accounts", response_class=HTMLResponse)
def accounts_page(context: Context, rt: Rt) -> HTMLResponse:
    return render("accounts.html", context, accounts=_accounts(rt))


@router.get("/api/accounts")
def accounts_api(_: Reader, rt: Rt) -> list[dict[str, Any]]:
    return _accounts(rt)


# --------------------------------------------------------------------------- rolls


def _rolls(rt: Runtime) -> dict[str, Any]:
    view = rolls_view(rt)

    def rows(rolls: list[Any]) -> list[dict[str, Any]]:
        return [{**roll_json(r), "session_name": view.names.get(r.session_id, "")} for r in rolls]

    return {
        "running": rows(view.running),
        "needs_operator": rows(view.needs_operator),
        "failed": rows(view.failed),
        "recent": rows(view.recent),
    }


@router.get("/rolls", response_class=HTMLResponse)
def rolls_page(context: Context, rt: Rt) -> HTMLResponse:
    return render("rolls.html", context, rolls=_rolls(rt))


@router.get("/api/rolls")
def rolls_api(_: Reader, rt: Rt) -> dict[str, Any]:
    return _rolls(rt)


# --------------------------------------------------------------------------- events


def _events(
    rt: Runtime, kind: str | None, severity: str | None, session: str | None
) -> dict[str, Any]:
    chosen = event_filter(rt, kind, severity, session)
    return {
        "filter": {
            "kind": chosen.kind or "",
            "severity": chosen.severity or "",
            "session": chosen.session_id or "",
        },
        "events": [event_json(e) for e in events_view(rt, chosen)],
    }


@router.get("/events", response_class=HTMLResponse)
def events_page(
    context: Context,
    rt: Rt,
    kind: str | None = None,
    severity: str | None = None,
    session: str | None = None,
) -> HTMLResponse:
    data = _events(rt, kind, severity, session)
    return render("events.html", context, kinds=EVENT_KINDS, severities=SEVERITIES, **data)


@router.get("/api/events")
def events_api(
    _: Reader,
    rt: Rt,
    kind: str | None = None,
    severity: str | None = None,
    session: str | None = None,
) -> dict[str, Any]:
    return _events(rt, kind, severity, session)


__all__ = ["page_context", "router"]
