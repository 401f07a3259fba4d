"""The console in a real browser (Debian's Chromium, headless, driven by Playwright) against real
Celery workers trading a replay on the paper broker, served by the real ``tradefleet web``:

- the fleet page's positions and P&L move without a reload and end equal to the broker's;
- an operator halts an account on the page; its session's next entry is refused (the risk
  event shows on the page) while its exit still fills, and the other account trades on;
- the session page's chart moves its forming candle as ticks arrive;
- a viewer sees no action, and a POST forged by a viewer is refused with 403, writing nothing;
- an unknown session is a clear error page that writes nothing;
- ``/metrics`` parses with prometheus_client's own parser and agrees with the SQL rows;
- every other action (flatten, stop, start, reconcile, roll, abort a roll, wind down, resume)
  works from its button through its confirm step.

Each page's screenshot is kept under ``var/test-artifacts/<test>/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from models.tables import FillRow, OrderRow, RollRow
from tests.kit.browser import Console, add_user, chromium, log_in, screenshot
from tests.kit.cli import sql_row_counts
from tests.kit.fleet import Fleet
from tests.kit.replay import SessionPlan, replay_ticks
from tests.kit.wait import wait_until
from tests.workers.risk.test_heat import ARGS, decisions, risk_events
from trading.market import Tick
from workers.risk.book import RiskBook

pytestmark = pytest.mark.integration

OPERATOR = ("olive", "olive-password-1")
VIEWER = ("victor", "victor-password-1")
LIVE_MS = 90_000
"""How long a live cell may take to show what the workers did (milliseconds)."""


def cell(session_id: str, field: str) -> str:
    return f'#session-{session_id} [data-field="{field}"]'


def wait_text(page: Page, selector: str, want: str) -> None:
    """Until the element's text is ``want`` (pushed by the page's live updates)."""
    page.wait_for_function(
        "([sel, want]) => { const e = document.querySelector(sel);"
        " return e !== null && e.textContent.trim() === want; }",
        arg=[selector, want],
        timeout=LIVE_MS,
    )


def act(page: Page, action: str, target: str | None = None, shot: tuple[str, str] | None = None):
    """Press an action's button, then confirm on the confirm page; the page acted on."""
    selector = f'button[data-action="{action}"]'
    if target is not None:
        selector += f'[data-target="{target}"]'
    page.click(selector)
    page.wait_for_selector("section.confirm")
    if shot is not None:
        screenshot(page, *shot)
    page.click("section.confirm button[type=submit]")
    page.wait_for_load_state()
    return page


@dataclass
class Desk:
    """A fleet of real workers, the console serving it, a browser, and an operator logged in."""

    rig: Fleet
    console: Console
    browser: Browser
    page: Page
    ids: dict[str, str]


@contextmanager
def desk(
    redis_url: str, pg_url: str, tmp_path: Path, plans: list[SessionPlan], **overrides: object
) -> Iterator[Desk]:
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url, **overrides) as rig:
        ids = rig.create_sessions(plans)
        rig.start_workers(count=1, concurrency=2)
        env = rig.cli_env()
        add_user(env, OPERATOR[0], "operator", OPERATOR[1])
        add_user(env, VIEWER[0], "viewer", VIEWER[1])
        with Console(env, tmp_path / "console") as console, chromium() as browser:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            yield Desk(rig, console, browser, page, ids)


def test_an_operator_watches_the_fleet_trade_and_halts_an_account(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    here = "console-operator-halts-an-account"
    ticks = replay_ticks()
    entry, reversal, *_ = decisions(ticks, 3)
    plans = [
        SessionPlan("alpha", "ACC-C1", "sma_cross", ARGS),
        SessionPlan("beta", "ACC-C2", "sma_cross", ARGS),
    ]
    with desk(redis_url, pg_url, tmp_path, plans, reconcile_positions_interval_s=1) as d:
        rig, console, page, ids = d.rig, d.console, d.page, d.ids
        database = rig.database_url
        rig.start_worker(queues=("reconcile", "default"))
        rig.start_beat()
        page.goto(console.url + "/")
        assert "/login" in page.url  # nothing without a login
        screenshot(page, here, "login")
        log_in(page, console, *OPERATOR)
        assert page.url.rstrip("/") == console.url
        page.evaluate("window.__sameDocument = 'kept'")
        for name in ("alpha", "beta"):
            assert page.inner_text(cell(ids[name], "position")).strip() == "0"
        realized_before = page.inner_text(cell(ids["alpha"], "realized")).strip()

        # positions and P&L move while ticks flow, without a reload
        rig.publish_replay(ticks[: entry.publish_until])
        for name in ("alpha", "beta"):
            wait_text(page, cell(ids[name], "position"), str(entry.target))
        rig.wait_settled()
        assert page.evaluate("window.__sameDocument") == "kept"
        screenshot(page, here, "fleet-trading")

        # the operator halts ACC-C1 from the accounts page
        page.goto(console.url + "/accounts")
        act(page, "halt-account", "ACC-C1", shot=(here, "confirm-halt"))
        assert page.url.startswith(console.url + "/accounts")
        assert "halted ACC-C1" in page.inner_text("#flash")
        screenshot(page, here, "accounts-halted")
        book = RiskBook(rig.client, rig.settings.risk)
        assert book.read("ACC-C1").halted and not book.read("ACC-C2").halted
        named = [e.details.get("user") for e in rig.events(ids["alpha"], "operator")]
        assert OPERATOR[0] in named

        # the next entry of its session is refused, its exit fills; ACC-C2 trades on
        page.goto(console.url + "/")
        page.evaluate("window.__sameDocument = 'kept'")
        rig.publish_replay(ticks[entry.publish_until : reversal.publish_until])
        rig.wait_settled()
        assert rig.broker_positions("ACC-C1") == {}
        assert any("entry refused: halted" in m for m in risk_events(rig, "alpha"))
        assert rig.broker_positions("ACC-C2") == {"ESZ13": reversal.target}
        for plan in plans:
            broker = rig.broker_positions(plan.account).get("ESZ13", 0)
            wait_text(page, cell(ids[plan.name], "position"), str(broker))
            pnl = rig.state(ids[plan.name]).account_pnl_info
            wait_text(page, cell(ids[plan.name], "realized"), str(pnl.realized))
            wait_text(page, cell(ids[plan.name], "unrealized"), str(pnl.unrealized))
        assert page.inner_text(cell(ids["alpha"], "realized")).strip() != realized_before
        for plan in plans:  # the broker's own answer, as reconciliation read it, agrees
            row = f"#session-{ids[plan.name]}"
            page.wait_for_selector(f'{row}[data-check="match"]', timeout=LIVE_MS)
            broker = rig.broker_positions(plan.account).get("ESZ13", 0)
            assert page.inner_text(cell(ids[plan.name], "broker")).startswith(f"broker {broker},")
        assert page.evaluate("window.__sameDocument") == "kept"
        assert page.get_attribute(f"#session-{ids['alpha']}", "data-status") == "halted"
        screenshot(page, here, "fleet-after-halt")

        page.goto(console.url + f"/sessions/{ids['alpha']}")
        page.wait_for_selector("text=entry refused: halted")
        screenshot(page, here, "session-refused-entry")
        page.goto(console.url + "/events?kind=risk")
        page.wait_for_selector("text=entry refused: halted")
        screenshot(page, here, "events-risk")

        # the session page's chart: its forming candle moves as ticks arrive
        page.goto(console.url + f"/sessions/{ids['beta']}")
        page.wait_for_function("window.tradefleetChart && window.tradefleetChart.lastBar")
        before = page.evaluate("JSON.stringify(window.tradefleetChart.lastBar)")
        rig.publish_replay(ticks[reversal.publish_until : reversal.publish_until + 40])
        page.wait_for_function(
            "before => JSON.stringify(window.tradefleetChart.lastBar) !== before",
            arg=before,
            timeout=LIVE_MS,
        )
        screenshot(page, here, "session-chart")
        rig.wait_settled()

        # a viewer sees no action, and a POST forged by a viewer is refused
        viewer = d.browser.new_page()
        log_in(viewer, console, *VIEWER)
        for path in ("/", "/accounts", f"/sessions/{ids['beta']}", "/rolls", "/events"):
            viewer.goto(console.url + path)
            assert viewer.locator("button[data-action]").count() == 0, path
        screenshot(viewer, here, "viewer-fleet")
        token = viewer.locator("form.logout input[name=csrf_token]").get_attribute("value")
        before_rows = sql_row_counts(database)
        forged = viewer.request.post(
            console.url + "/actions/halt",
            form={"account": "ACC-C2", "csrf_token": token or "", "confirmed": "1"},
            max_redirects=0,
        )
        assert forged.status == 403
        assert not book.read("ACC-C2").halted
        assert sql_row_counts(database) == before_rows

        # an unknown session: a clear error page, nothing written
        answer = page.goto(console.url + "/sessions/no-such-session")
        assert answer is not None and answer.status == 404
        shown = page.inner_text("main")
        assert "no-such-session" in shown and "Traceback" not in page.content()
        screenshot(page, here, "unknown-session")
        assert sql_row_counts(database) == before_rows

        # /metrics parses with prometheus_client's own parser and agrees with the rows
        assert console.metrics(token=None).status_code == 401
        scraped = console.metrics()
        assert scraped.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
        with rig.engine.connect() as db:
            fills = db.scalar(select(func.count()).select_from(FillRow))
            orders = db.scalar(select(func.count()).select_from(OrderRow))
        assert fills and fills > 0
        shown_fills = [s.value for s in families["tradefleet_fills"].samples]
        assert shown_fills[0] == fills
        created = {
            s.labels["outcome"]: s.value
            for s in families["tradefleet_orders"].samples
            if s.name == "tradefleet_orders_total"
        }
        assert created["created"] + created["external"] == orders
        positions = {
            s.labels["session"]: s.value
            for s in families["tradefleet_session_position_contracts"].samples
        }
        assert positions == {"alpha": 0, "beta": reversal.target}


def test_every_action_from_its_button_through_its_confirm_step(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    here = "console-every-action"
    ticks = replay_ticks()
    entry, *_ = decisions(ticks, 1)
    plans = [
        SessionPlan("gamma", "ACC-D1", "sma_cross", ARGS),
        SessionPlan("delta", "ACC-D2", "sma_cross", ARGS),
    ]
    overrides = {"roll_fill_max_tries": 2, "roll_fill_retry_s": 0.5}
    with desk(redis_url, pg_url, tmp_path, plans, **overrides) as d:
        rig, console, page, ids = d.rig, d.console, d.page, d.ids
        rig.start_worker(queues=("reconcile", "rolls", "default"), concurrency=1)
        log_in(page, console, *OPERATOR)
        rig.publish_replay(ticks[: entry.publish_until])
        rig.wait_settled()
        gamma, delta = ids["gamma"], ids["delta"]
        assert rig.quantity(gamma) == rig.quantity(delta) == entry.target

        # stop is refused while the session holds a position: flatten it first
        page.goto(console.url + f"/sessions/{gamma}")
        act(page, "stop", gamma, shot=(here, "confirm-stop"))
        assert "flatten it first" in page.inner_text("main")
        screenshot(page, here, "stop-refused")
        page.goto(console.url + f"/sessions/{gamma}")
        act(page, "flatten", gamma, shot=(here, "confirm-flatten"))
        rig.wait_settled()
        assert rig.broker_positions("ACC-D1") == {} and rig.quantity(gamma) == 0

        # stop, then start again
        page.goto(console.url + f"/sessions/{gamma}")
        act(page, "stop", gamma)
        wait_until(lambda: rig.state(gamma).trading is False, what="gamma stopped")
        page.goto(console.url + "/")
        assert page.get_attribute(f"#session-{gamma}", "data-status") == "stopped"
        page.goto(console.url + f"/sessions/{gamma}")
        act(page, "start", gamma)
        wait_until(lambda: rig.state(gamma).trading is True, what="gamma started")

        # reconcile now: the broker's answer recorded (an operator event names the user)
        page.goto(console.url + f"/sessions/{delta}")
        act(page, "reconcile", delta)
        assert "in sync" in page.inner_text("#flash")

        # roll now: a flat session switches to the next contract at the spread of the first
        # prints of both contracts after the decision
        page.goto(console.url + f"/sessions/{gamma}")
        act(page, "roll", gamma, shot=(here, "confirm-roll"))
        last = ticks[entry.publish_until - 1]
        publisher = rig.publisher()
        publisher.publish("ESZ13", [Tick("ESZ13", last.time + timedelta(seconds=1), last.price, 5)])
        new_price = last.price + Decimal(10)
        publisher.publish("ESH14", [Tick("ESH14", last.time + timedelta(seconds=2), new_price, 5)])
        wait_until(lambda: _roll_of(rig, gamma) == "done", timeout=60, what="gamma's roll to end")
        assert rig.contract(gamma) == "ESH14"

        # a roll whose close never fills (no print after its decision) fails; abort it from
        # the rolls page
        rig.wait_settled()
        assert rig.quantity(delta) != 0
        page.goto(console.url + f"/sessions/{delta}")
        act(page, "roll", delta)
        wait_until(
            lambda: _roll_of(rig, delta) in {"failed", "needs_operator"},
            timeout=90,
            what="delta's roll to fail",
        )
        page.goto(console.url + "/rolls")
        screenshot(page, here, "rolls-failed")
        roll_id = _roll_id(rig, delta)
        act(page, "roll-resume", str(roll_id), shot=(here, "confirm-resume-roll"))
        assert f"roll {roll_id} resumed" in page.inner_text("#flash")
        wait_until(
            lambda: _roll_of(rig, delta) in {"failed", "needs_operator"},
            timeout=90,
            what="delta's resumed roll to fail again",
        )
        page.goto(console.url + "/rolls")
        act(page, "roll-abort", str(roll_id), shot=(here, "confirm-abort"))
        wait_until(lambda: _roll_of(rig, delta) == "aborted", what="delta's roll aborted")
        screenshot(page, here, "rolls-aborted")

        # the kill switch halts every account; one is resumed from the accounts page
        book = RiskBook(rig.client, rig.settings.risk)
        page.goto(console.url + "/")
        act(page, "halt-fleet", shot=(here, "confirm-halt-fleet"))
        assert book.read("ACC-D1").halted and book.read("ACC-D2").halted
        page.goto(console.url + "/accounts")
        act(page, "resume-account", "ACC-D1")
        assert not book.read("ACC-D1").halted and book.read("ACC-D2").halted

        # wind down: every account halted, every session flat; then resume the fleet
        page.goto(console.url + "/")
        act(page, "wind-down", shot=(here, "confirm-wind-down"))
        rig.wait_settled()
        assert book.read("ACC-D1").halted and book.read("ACC-D2").halted
        assert rig.broker_positions("ACC-D2") == {}
        page.goto(console.url + "/accounts")
        act(page, "resume-fleet")
        assert not book.read("ACC-D1").halted and not book.read("ACC-D2").halted
        screenshot(page, here, "accounts-resumed")

        users = {
            e.details.get("user") for sid in (gamma, delta) for e in rig.events(sid, "operator")
        }
        assert users == {OPERATOR[0]}


def _roll_of(rig: Fleet, session_id: str) -> str | None:
    with rig.engine.connect() as db:
        return db.scalar(
            select(RollRow.status)
            .where(RollRow.session_id == session_id)
            .order_by(RollRow.id.desc())
            .limit(1)
        )


def _roll_row(rig: Fleet, session_id: str) -> dict[str, object]:
    with rig.engine.connect() as db:
        row = db.execute(select(RollRow).where(RollRow.session_id == session_id)).first()
    return {} if row is None else dict(row._mapping)


def _roll_id(rig: Fleet, session_id: str) -> int:
    with rig.engine.connect() as db:
        found = db.scalar(
            select(RollRow.id)
            .where(RollRow.session_id == session_id)
            .order_by(RollRow.id.desc())
            .limit(1)
        )
    assert found is not None
    return found
