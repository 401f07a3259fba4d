"""The console's actions on a real app, real Redis, PostgreSQL and the paper broker: operators
only, CSRF-checked, a confirm step that writes nothing, then the CLI's own function, an
``operator`` event naming the user and a redirect with a flash; unknown things are 404 pages
and bad fields 400 pages, nothing written."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import EventRow, OrderRow, RollRow, TradingSessionRow
from tests.kit.desk import Desk
from tests.kit.paper import paper
from tests.kit.snapshots import CONTRACT
from tests.workers.web.logins import add_users, console, csrf, logged_in
from workers.db.roll_rows import create_roll, get_roll, set_status
from workers.db.session_rows import get_session_row
from workers.risk.book import RiskBook
from workers.web.auth import SESSION_COOKIE

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-WEB"


@dataclass
class World:
    desk: Desk
    client: TestClient
    sid: str
    """A session on ``ACCOUNT`` holding a long position of 1."""

    def post(self, url: str, **fields: str) -> Any:
        """POST a form with the login's CSRF token (unless one is given)."""
        data = {"csrf_token": csrf(self.client, self.desk), **fields}
        return self.client.post(url, data=data)

    def act(self, url: str, **fields: str) -> Any:
        """The confirm step, then the confirmed POST of the fields it re-posts."""
        page = self.post(url, **fields)
        assert page.status_code == 200, page.text
        assert "confirm" in page.text
        return self.client.post(url, data=confirm_fields(page.text))


def confirm_fields(page: str) -> dict[str, str]:
    """The hidden fields of the confirm page's form (not the logout form's)."""
    form = page[page.index('<section class="confirm">') :]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))


def flash_of(answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def footprint(desk: Desk) -> tuple[Any, ...]:
    """Everything an action could write: rows per table, sessions' status and trading,
    accounts' halt flags, the broker's positions, the rolls queue."""
    with Session(desk.engine) as db:
        rows = tuple(
            int(db.scalar(select(func.count()).select_from(table)) or 0)
            for table in (EventRow, OrderRow, RollRow)
        )
        statuses = tuple(db.scalars(select(TradingSessionRow.status)).all())
    book = RiskBook(desk.rt.redis, desk.settings.risk)
    trading = tuple(desk.rt.store.load(s).trading for s in sessions(desk))
    return (
        rows,
        statuses,
        trading,
        book.read(ACCOUNT).halted,
        desk.broker_positions(ACCOUNT),
        desk.client.llen("rolls"),
    )


def sessions(desk: Desk) -> list[str]:
    with Session(desk.engine) as db:
        return list(db.scalars(select(TradingSessionRow.id)).all())


def operator_events(desk: Desk) -> list[EventRow]:
    return desk.events("operator")


@pytest.fixture
def world(redis_url: str, pg_url: str) -> Iterator[World]:
    with Desk(redis_url, pg_url) as desk:
        add_users(desk)
        sid = desk.create("web-1", ACCOUNT)
        desk.hold(sid, ACCOUNT)
        with console(desk) as client:
            logged_in(client, "alice")
            yield World(desk, client, sid)


def test_every_action_refuses_a_viewer_and_a_forged_form_and_writes_nothing(
    world: World,
) -> None:
    desk, sid = world.desk, world.sid
    roll = create_roll(desk.engine, sid, CONTRACT, "ESH14", datetime.now(UTC))
    set_status(desk.engine, roll.id, "failed")
    urls = [
        "/actions/halt",
        "/actions/resume",
        "/actions/wind-down",
        *(f"/sessions/{sid}/{a}" for a in ("flatten", "stop", "start", "reconcile", "roll")),
        f"/rolls/{roll.id}/resume",
        f"/rolls/{roll.id}/abort",
    ]
    before = footprint(desk)
    for url in urls:
        for fields in ({"confirmed": "1"}, {"confirmed": "1", "csrf_token": "0" * 64}):
            forged = world.client.post(url, data=fields)
            assert forged.status_code == 403, url
            assert "CSRF token is missing or wrong" in forged.text
    world.client.cookies.clear()
    for url in urls:
        assert world.client.post(url, data={"confirmed": "1"}).status_code == 303
    logged_in(world.client, "victor")
    for url in urls:
        refused = world.post(url, confirmed="1")
        assert refused.status_code == 403, url
        assert "victor is a viewer: only an operator may act" in refused.text
        assert not re.search(r'<form method="post" action="/(actions|sessions|rolls)', refused.text)
    assert footprint(desk) == before


def test_the_confirm_step_says_what_will_happen_and_writes_nothing(world: World) -> None:
    desk, sid = world.desk, world.sid
    before = footprint(desk)
    page = world.post(f"/sessions/{sid}/flatten", next="/sessions")
    assert page.status_code == 200
    assert "Flatten session web-1 (ACC-WEB, ESZ13)?" in page.text
    assert "holds 1" in page.text and "market order taking its position to flat" in page.text
    assert confirm_fields(page.text) == {
        "csrf_token": csrf(world.client, desk),
        "next": "/sessions",
        "confirmed": "1",
    }
    # the confirmation posts back to the action itself (a template name once shadowed it)
    assert f'<form method="post" action="/sessions/{sid}/flatten">' in page.text
    halt_page = world.post("/actions/halt", account=ACCOUNT)
    assert "Halt account ACC-WEB?" in halt_page.text
    assert '<form method="post" action="/actions/halt">' in halt_page.text
    assert confirm_fields(halt_page.text)["account"] == ACCOUNT
    roll_page = world.post(f"/sessions/{sid}/roll", to="esm14")
    assert "Roll session web-1 (ACC-WEB, ESZ13) to ESM14?" in roll_page.text
    assert footprint(desk) == before


def test_halt_resume_and_wind_down_name_the_user(world: World) -> None:
    desk = world.desk
    book = RiskBook(desk.rt.redis, desk.settings.risk)
    halted = world.act("/actions/halt", account=ACCOUNT, next="/accounts?x=1")
    location = flash_of(halted)
    assert location.startswith("/accounts?x=1&flash=")
    assert book.read(ACCOUNT).halted
    shown = world.client.get("/login", params=parse_qs(urlsplit(location).query))
    flash = '<p class="flash" id="flash" role="status">halted ACC-WEB: 0 entry orders cancelled'
    assert flash in shown.text
    assert operator_events(desk)[-1].message == (
        "halted ACC-WEB: 0 entry orders cancelled, 0 exits sent (by alice)"
    )

    flash_of(world.act("/actions/resume", account=ACCOUNT))
    assert not book.read(ACCOUNT).halted
    assert operator_events(desk)[-1].message == "resumed ACC-WEB (by alice)"

    flash_of(world.act("/actions/wind-down"))
    assert book.read(ACCOUNT).halted
    assert desk.broker_positions(ACCOUNT) == {}
    assert desk.position(world.sid) == 0
    last = operator_events(desk)[-1]
    assert last.message.startswith("halted and flattened ACC-WEB: ")
    assert last.details["user"] == "alice"


def test_flatten_stop_and_start_a_session(world: World) -> None:
    desk, sid = world.desk, world.sid
    before = footprint(desk)
    refused = world.act(f"/sessions/{sid}/stop")
    assert refused.status_code == 400
    assert "holds a position of 1; flatten it first" in refused.text
    assert footprint(desk) == before

    flash_of(world.act(f"/sessions/{sid}/flatten"))
    assert desk.broker_positions(ACCOUNT) == {}
    assert desk.position(sid) == 0
    flattened = operator_events(desk)[-1]
    assert "flattened" in flattened.message and flattened.details["user"] == "alice"
    assert flattened.session_id == sid

    flash_of(world.act(f"/sessions/{sid}/stop"))
    row = get_session_row(desk.engine, sid)
    assert row is not None and row.status == "stopped"
    assert desk.rt.store.load(sid).trading is False
    assert operator_events(desk)[-1].message == "session stopped (by alice)"

    flash_of(world.act(f"/sessions/{sid}/start"))
    row = get_session_row(desk.engine, sid)
    assert row is not None and row.status == "active"
    assert desk.rt.store.load(sid).trading is True
    assert operator_events(desk)[-1].message == "session started (by alice)"


def test_reconcile_corrects_to_the_broker_and_names_the_user(world: World) -> None:
    desk, sid = world.desk, world.sid
    paper(desk.rt, ACCOUNT).book_external_fill(
        ACCOUNT, CONTRACT, 2, Decimal("1680.25"), datetime.now(UTC)
    )
    location = flash_of(world.act(f"/sessions/{sid}/reconcile"))
    assert "flash=" in location
    assert desk.position(sid) == 3
    (corrected,) = desk.events("reconciliation")
    assert corrected.message == "position corrected from 1 to 3"
    last = operator_events(desk)[-1]
    assert last.message == "positions reconciled: corrected (by alice)"
    assert (last.details["local"], last.details["broker"]) == (1, 3)


def test_roll_resume_and_abort(world: World) -> None:
    desk, sid = world.desk, world.sid
    flash_of(world.act(f"/sessions/{sid}/roll", to="ESH14"))
    with Session(desk.engine) as db:
        (roll,) = db.scalars(select(RollRow)).all()
    assert (roll.session_id, roll.to_contract, roll.status) == (sid, "ESH14", "running")
    assert desk.client.llen("rolls") == 1
    assert operator_events(desk)[-1].message == (
        f"roll {roll.id} started: ESZ13 -> ESH14 (by alice)"
    )

    set_status(desk.engine, roll.id, "failed")
    flash_of(world.act(f"/rolls/{roll.id}/resume"))
    resumed = get_roll(desk.engine, roll.id)
    assert resumed is not None and resumed.status == "running"
    assert desk.client.llen("rolls") == 2
    assert operator_events(desk)[-1].message.startswith(f"roll {roll.id} resumed")

    set_status(desk.engine, roll.id, "needs_operator")
    flash_of(world.act(f"/rolls/{roll.id}/abort"))
    aborted = get_roll(desk.engine, roll.id)
    assert aborted is not None and aborted.status == "aborted"
    assert desk.rt.store.load(sid).trading is False
    assert operator_events(desk)[-1].message.startswith(f"roll {roll.id} aborted")
    assert operator_events(desk)[-1].details["user"] == "alice"


def test_unknown_things_are_404_and_bad_fields_400_and_nothing_is_written(
    world: World,
) -> None:
    desk, sid = world.desk, world.sid
    before = footprint(desk)
    for url in (
        "/sessions/no-such-session/flatten",
        "/sessions/no-such-session/stop",
        "/sessions/no-such-session/start",
        "/sessions/no-such-session/reconcile",
        "/sessions/no-such-session/roll",
    ):
        for confirmed in ("", "1"):
            answer = world.post(url, confirmed=confirmed)
            assert answer.status_code == 404, url
            assert "unknown session: no-such-session" in answer.text
    for url in ("/rolls/999/resume", "/rolls/abc/abort"):
        answer = world.post(url, confirmed="1")
        assert answer.status_code == 404 and "unknown roll" in answer.text
    unknown_account = world.post("/actions/halt", account="NOPE", confirmed="1")
    assert unknown_account.status_code == 404
    assert "unknown account: NOPE" in unknown_account.text
    bad = [
        (f"/sessions/{sid}/flatten", {"confirmed": "yes"}, "bad field confirmed='yes'"),
        (f"/sessions/{sid}/roll", {"to": "GCZ13", "confirmed": "1"}, "another product"),
        (f"/sessions/{sid}/roll", {"to": "ESZ13"}, "into itself"),
        ("/actions/halt", {"account": "A" * 101, "confirmed": "1"}, "bad request: account"),
    ]
    for url, fields, message in bad:
        answer = world.post(url, **fields)
        assert answer.status_code == 400, (url, answer.text)
        assert message in html.unescape(answer.text), answer.text
    assert footprint(desk) == before
    assert world.client.cookies.get(SESSION_COOKIE)


def test_next_is_followed_only_on_this_console(world: World) -> None:
    answer = world.act("/actions/resume", account=ACCOUNT, next="https://evil.example/x")
    assert flash_of(answer).startswith("/?flash=")
