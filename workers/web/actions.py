"""The operator's actions, each a POST form (its CSRF token checked before anything runs,
``workers.web.auth.check_csrf``), for operators only, in two steps:

1. the form's POST (without ``confirmed``) checks the fields and answers ``confirm.html``:
   exactly what will happen, and a form posting the same fields again with ``confirmed=1``;
   nothing is written;
2. that POST acts, through the same function as the CLI, which leaves an ``operator`` event
   naming the user, and redirects (303) to the form's ``next`` path (this console's only) with
   a one-line flash message.

| URL | fields | does (the CLI's) |
|---|---|---|
| ``/actions/halt`` | ``account`` (empty: every account) | ``halt`` (``tradefleet halt``) |
| ``/actions/resume`` | ``account`` | ``resume`` (``tradefleet resume``) |
| ``/actions/wind-down`` | | ``wind_down`` (``tradefleet wind-down``) |
| ``/sessions/{id}/flatten`` | | ``flatten_session`` (``tradefleet session flatten``) |
| ``/sessions/{id}/stop`` | | ``stop_session`` (``tradefleet session stop``) |
| ``/sessions/{id}/start`` | | ``start_session`` (``tradefleet session start``) |
| ``/sessions/{id}/reconcile`` | | ``reconcile_now`` (``reconcile positions --now``) |
| ``/sessions/{id}/roll`` | ``to`` (empty: the next) | ``roll_now`` (``tradefleet roll``) |
| ``/rolls/{roll_id}/resume`` | | ``resume_by`` (``tradefleet roll ID --resume``) |
| ``/rolls/{roll_id}/abort`` | | ``abort_by`` (``tradefleet roll ID --abort``) |

Every form also carries ``csrf_token`` and may carry ``next``. The roll and reconcile functions
sit above ``workers.operations``: their operator versions are ``workers.rolls.by_operator``
and ``workers.reconcile.by_operator``, as the CLI's. Roll actions queue Celery tasks: one
Celery app per console process, made on first use (``celery_app``), closed with the app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from celery import Celery
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from models.tables import RollRow, TradingSessionRow
from trading.exceptions import BadInput
from trading.orders import OPEN_STATUSES
from trading.rolls import roll_target
from workers.celery_app import create_app as create_celery_app
from workers.db.roll_rows import require_roll
from workers.operations.flatten import flatten_session
from workers.operations.flatten import require_session as require_state
from workers.operations.halt import halt, resume, wind_down
from workers.operations.session_view import require_session
from workers.operations.stop import start_session, stop_session
from workers.reconcile.by_operator import reconcile_now
from workers.risk.accounts import known_accounts
from workers.rolls.by_operator import abort_by, resume_by, roll_now
from workers.runtime import Runtime
from workers.web.auth import User, require_operator
from workers.web.deps import TEMPLATES, runtime, settings
from workers.web.errors import NotFound
from workers.web.flash import safe_next, with_flash

router = APIRouter()

Operator = Annotated[User, Depends(require_operator)]
Confirmed = Annotated[str, Form(alias="confirmed", max_length=10)]
Next = Annotated[str, Form(alias="next", max_length=2000)]
Account = Annotated[str, Form(max_length=100)]
Contract = Annotated[str, Form(max_length=50)]

_celery_lock = threading.Lock()


def celery_app(request: Request) -> Celery:
    """This console process's Celery app (made on first use; ``create_app`` closes it)."""
    with _celery_lock:
        app: Celery | None = getattr(request.app.state, "celery", None)
        if app is None:
            app = create_celery_app(settings(request))
            request.app.state.celery = app
        return app


@dataclass(frozen=True, slots=True)
class Plan:
    """What a confirmed action will do: a title and the lines saying exactly what happens."""

    title: str
    lines: list[str]
    fields: dict[str, str] = field(default_factory=dict)
    """The action's own form fields, posted again with the confirmation."""


def confirmed(value: str) -> bool:
    """The ``confirmed`` field: empty (the first step) or ``1`` (act); else ``BadInput``."""
    if value not in {"", "1"}:
        raise BadInput(f"bad field confirmed={value[:10]!r}: expected 1 or nothing")
    return value == "1"


def confirm_page(request: Request, user: User, plan: Plan, next_path: str) -> Response:
    return TEMPLATES.TemplateResponse(
        request,
        "confirm.html",
        {
            "user": user,
            "title": plan.title,
            "lines": plan.lines,
            "action_url": request.url.path,
            "fields": {**plan.fields, "next": next_path, "confirmed": "1"},
            "next": next_path,
        },
    )


def done(request: Request, next_path: str, message: str) -> Response:
    target = with_flash(settings(request).web, next_path, message)
    return RedirectResponse(target, status_code=303)


def two_steps(
    request: Request,
    user: User,
    confirmed_: str,
    next_: str,
    plan: Callable[[], Plan],
    act: Callable[[], str],
) -> Response:
    """The first POST answers the confirm page of ``plan()``, writing nothing; the confirmed
    one runs ``act()`` and redirects to ``next`` with its line as the flash message."""
    target = safe_next(next_)
    if not confirmed(confirmed_):
        return confirm_page(request, user, plan(), target)
    return done(request, target, act())


def account_of(rt: Runtime, value: str) -> str | None:
    """The ``account`` field: None (every account) or a known account, else 404."""
    name = value.strip()
    if not name:
        return None
    if name not in known_accounts(rt.engine):
        raise NotFound(f"unknown account: {name}")
    return name


def roll_of(rt: Runtime, roll_id: str) -> RollRow:
    if not roll_id.isdigit() or len(roll_id) > 18:
        raise NotFound(f"unknown roll: {roll_id[:40]}")
    return require_roll(rt.engine, int(roll_id))


def named(row: TradingSessionRow) -> str:
    return f"session {row.name} ({row.account}, {row.contract})"


def holding(rt: Runtime, row: TradingSessionRow) -> str:
    """What the session holds now, for a confirmation."""
    if not rt.store.exists(row.id):
        return "its state is missing in Redis"
    state = rt.store.load(row.id)
    held = 0 if state.open_position is None else state.open_position.quantity
    working = [o for o in state.orders.values() if o.status in OPEN_STATUSES]
    trading = "trading" if state.trading else "not trading"
    return f"it is {row.status} and {trading}, holds {held}, with {len(working)} open order(s)"


# ------------------------------------------------------------------ the fleet


@router.post("/actions/halt")
def halt_action(
    request: Request,
    user: Operator,
    account: Account = "",
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    name = account_of(rt, account)

    def plan() -> Plan:
        which = f"account {name}" if name else _every_account(rt)
        return Plan(
            f"Halt {which}",
            [
                f"New entries are refused on {which} until it is resumed.",
                "Its sessions' open entry orders are cancelled at the broker.",
                "Positions stay as they are; exits and protective stops still work.",
            ],
            {"account": name or ""},
        )

    def act() -> str:
        return halt(rt, name, False, user.name).line()

    return two_steps(request, user, confirmed_, next_, plan, act)


@router.post("/actions/resume")
def resume_action(
    request: Request,
    user: Operator,
    account: Account = "",
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    name = account_of(rt, account)

    def plan() -> Plan:
        which = f"account {name}" if name else _every_account(rt)
        return Plan(
            f"Resume {which}",
            [f"The halt of {which} is lifted: entries pass again, within the risk limits."],
            {"account": name or ""},
        )

    def act() -> str:
        accounts = resume(rt, name, user.name)
        return f"resumed {', '.join(accounts) or 'no account'}"

    return two_steps(request, user, confirmed_, next_, plan, act)


@router.post("/actions/wind-down")
def wind_down_action(
    request: Request,
    user: Operator,
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)

    def plan() -> Plan:
        return Plan(
            "Wind down the whole fleet",
            [
                f"New entries are refused on {_every_account(rt)} until resumed.",
                "Every active session's open entry orders are cancelled at the broker.",
                "Every active session is then sent a market order taking it to flat, now; "
                "one in a roll is left to its roll (resume or abort it, then flatten).",
            ],
        )

    def act() -> str:
        return wind_down(rt, user.name).line("wound down")

    return two_steps(request, user, confirmed_, next_, plan, act)


def _every_account(rt: Runtime) -> str:
    names = known_accounts(rt.engine)
    return f"every account ({', '.join(names) or 'none yet'})"


# ------------------------------------------------------------------ one session


@router.post("/sessions/{session_id}/flatten")
def flatten_action(
    request: Request,
    session_id: str,
    user: Operator,
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    row = require_session(rt, session_id)

    def plan() -> Plan:
        return Plan(
            f"Flatten {named(row)}",
            [
                f"Now {holding(rt, row)}.",
                "Its open entry orders are cancelled at the broker.",
                "A market order taking its position to flat is sent now.",
                "Its strategy keeps running: halt its account or stop it to keep it flat.",
            ],
        )

    def act() -> str:
        return flatten_session(rt, row.id, user.name).line()

    return two_steps(request, user, confirmed_, next_, plan, act)


@router.post("/sessions/{session_id}/stop")
def stop_action(
    request: Request,
    session_id: str,
    user: Operator,
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    row = require_session(rt, session_id)

    def plan() -> Plan:
        return Plan(
            f"Stop {named(row)}",
            [
                f"Now {holding(rt, row)}.",
                "Only a flat session with no open order stops: otherwise nothing is done "
                "(flatten it first).",
                "Stopped, its strategy decides nothing and it is no longer reconciled, "
                "recovered or rolled; its candles stay current.",
            ],
        )

    def act() -> str:
        return stop_session(rt, row.id, user.name).line()

    return two_steps(request, user, confirmed_, next_, plan, act)


@router.post("/sessions/{session_id}/start")
def start_action(
    request: Request,
    session_id: str,
    user: Operator,
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    row = require_session(rt, session_id)

    def plan() -> Plan:
        return Plan(
            f"Start {named(row)}",
            [
                f"Now {holding(rt, row)}.",
                "It becomes active and trading: its strategy runs from its next closed candle.",
                "Its entries still pass the risk checks and any halt of its account.",
            ],
        )

    def act() -> str:
        return start_session(rt, row.id, user.name).line()

    return two_steps(request, user, confirmed_, next_, plan, act)


@router.post("/sessions/{session_id}/reconcile")
def reconcile_action(
    request: Request,
    session_id: str,
    user: Operator,
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    row = require_session(rt, session_id)

    def plan() -> Plan:
        return Plan(
            f"Reconcile the position of {named(row)}",
            [
                f"Now {holding(rt, row)}.",
                "Its position is compared with the broker's now; a difference is corrected "
                "to the broker's, with an event (the broker is the truth).",
            ],
        )

    def act() -> str:
        return reconcile_now(rt, row.id, user.name).line()

    return two_steps(request, user, confirmed_, next_, plan, act)


@router.post("/sessions/{session_id}/roll")
def roll_action(
    request: Request,
    session_id: str,
    user: Operator,
    to: Contract = "",
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    row = require_session(rt, session_id)
    into = to.strip() or None

    def plan() -> Plan:
        require_state(rt, row.id)
        contract = rt.store.load(row.id).session.contract
        return Plan(
            f"Roll {named(row)} to {roll_target(contract, into)}",
            [
                f"Now {holding(rt, row)}.",
                "Its strategy pauses; its position is closed in "
                f"{contract} and the same position opened in {roll_target(contract, into)}, "
                "by the workers on the rolls queue; then it trades the new contract.",
            ],
            {"to": into or ""},
        )

    def act() -> str:
        roll = roll_now(rt, celery_app(request), row.id, into, user.name)
        return f"roll {roll.id} started: {roll.from_contract} -> {roll.to_contract}"

    return two_steps(request, user, confirmed_, next_, plan, act)


# ------------------------------------------------------------------ one roll


@router.post("/rolls/{roll_id}/resume")
def resume_roll_action(
    request: Request,
    roll_id: str,
    user: Operator,
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    roll = roll_of(rt, roll_id)

    def plan() -> Plan:
        return Plan(
            f"Resume roll {roll.id} ({roll.from_contract} -> {roll.to_contract})",
            [
                f"It is {roll.status} at step {roll.step}"
                + (f" ({roll.error})" if roll.error else "")
                + ".",
                "It runs again from that step on the rolls queue; its session trades again "
                "once it ends.",
            ],
        )

    def act() -> str:
        row = resume_by(rt, celery_app(request), roll.id, user.name)
        return f"roll {row.id} resumed at {row.step}"

    return two_steps(request, user, confirmed_, next_, plan, act)


@router.post("/rolls/{roll_id}/abort")
def abort_roll_action(
    request: Request,
    roll_id: str,
    user: Operator,
    confirmed_: Confirmed = "",
    next_: Next = "/",
) -> Response:
    rt = runtime(request)
    roll = roll_of(rt, roll_id)

    def plan() -> Plan:
        return Plan(
            f"Abort roll {roll.id} ({roll.from_contract} -> {roll.to_contract})",
            [
                f"It is {roll.status} at step {roll.step}.",
                "Its working orders are cancelled at the broker and fills already made are "
                "applied to its session.",
                "The session is left NOT trading, for you to check its position and start it.",
            ],
        )

    def act() -> str:
        row = abort_by(rt, roll.id, user.name)
        return f"roll {row.id} aborted at {row.step}; the session is not trading"

    return two_steps(request, user, confirmed_, next_, plan, act)
