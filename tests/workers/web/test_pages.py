"""The console's pages, JSON and streams on real Redis, PostgreSQL, Celery workers and the
paper broker: what they show is what the stores hold."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import (
    AccountRow,
    EventRow,
    FillRow,
    OrderRow,
    RollRow,
    TradingSessionRow,
)
from tests.kit.fleet import Fleet
from tests.kit.replay import SessionPlan, replay_ticks
from tests.kit.wait import wait_until
from tests.workers.risk.test_heat import ARGS, decisions
from tests.workers.web.console import (
    CSRF,
    VIEWER,
    console,
    console_app,
    read_events,
    serving,
)
from workers.db.event_rows import record_event
from workers.db.order_rows import count_rows
from workers.db.roll_rows import create_roll, set_status
from workers.db.session_rows import set_session_status
from workers.reconcile.position_check import reconcile_positions
from workers.risk.accounts import set_halted
from workers.risk.book import RiskBook
from workers.risk.feed_stall import set_stalled
from workers.sessions.create import NewSession, create_session
from workers.settings import Settings
from workers.state.store import StateChanges
from workers.web.deps import STATIC_DIR
from workers.web.flash import with_flash

pytestmark = pytest.mark.integration


def sessions_by_id(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in data["sessions"]}


def row_of(html: str, session_id: str) -> str:
    """The fleet table's row of one session (its opening tag to its end)."""
    match = re.search(rf'<tr id="session-{session_id}".*?</tr>', html, re.S)
    assert match is not None, f"no row for {session_id}"
    return match.group(0)


# --------------------------------------------------------------------------- a moving fleet


def test_the_fleet_shows_what_each_session_holds_and_the_broker_beside_it(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    """Three sessions trade the real replay on real workers (two share an account): the
    fleet's JSON, page and stream show each one's position and P&L as its state holds them,
    the account totals are the exact sums of the rows, the broker's position as the position
    check read it stands beside each, and a position that differs from it is flagged."""
    ticks = replay_ticks()
    _, reversal, *_ = decisions(ticks, 3)
    plans = [
        SessionPlan("w-one", "ACC-W1", "sma_cross", ARGS),
        SessionPlan("w-two", "ACC-W1", "sma_cross", ARGS),
        SessionPlan("w-three", "ACC-W2", "sma_cross", ARGS),
    ]
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url, reconcile_grace_s=0) as rig:
        ids = rig.create_sessions(plans)
        rig.start_workers(count=1, concurrency=2)
        rig.publish_replay(ticks[: reversal.publish_until + 40])
        rig.wait_settled()
        states = {sid: rig.state(sid) for sid in ids.values()}
        assert all(s.open_position and s.open_position.quantity for s in states.values())
        assert all(s.account_pnl_info.realized != 0 for s in states.values())

        app = console_app(rig.settings)
        with serving(app) as base, console(rig.settings) as client:
            fleet = client.get("/api/fleet").json()
            shown = sessions_by_id(fleet)
            assert set(shown) == set(ids.values())
            for sid, state in states.items():
                row, pnl = shown[sid], state.account_pnl_info
                assert state.open_position is not None
                assert row["position"] == state.open_position.quantity
                assert row["average_price"] == str(state.open_position.average_price)
                assert (row["realized"], row["unrealized"], row["commissions"]) == (
                    str(pnl.realized),
                    str(pnl.unrealized),
                    str(pnl.commissions),
                )
                assert row["candles_closed"] == rig.progress(state.session.name).candles_closed
                assert row["tick_lag_ms"] == 0
                assert row["broker"] is None and row["broker_check"] == "unknown"

            totals = {t["account"]: t for t in fleet["accounts"]}
            assert set(totals) == {"ACC-W1", "ACC-W2"}
            for account, total in totals.items():
                rows = [s for s in fleet["sessions"] if s["account"] == account]
                assert total["sessions"] == len(rows)
                assert total["position"] == sum(s["position"] for s in rows)
                for name in ("realized", "unrealized", "commissions", "risk", "heat"):
                    assert Decimal(total[name]) == sum(
                        (Decimal(s[name]) for s in rows), Decimal(0)
                    ), name
            assert Decimal(totals["ACC-W1"]["heat"]) > 0

            reconcile_all(rig, ids.values())
            shown = sessions_by_id(client.get("/api/fleet").json())
            for plan in plans:
                sid = ids[plan.name]
                held = rig.broker_positions(plan.account)["ESZ13"]
                assert shown[sid]["broker"]["quantity"] == held
                assert shown[sid]["broker_check"] == "match"
                shared = sum(1 for other in plans if other.account == plan.account)
                assert shown[sid]["group_sessions"] == shared
                assert shown[sid]["group_position"] == held
                text = f"broker {held}, " if shared == 1 else f"broker {held} for 2 sessions "
                assert shown[sid]["cells"]["broker"].startswith(text)
            assert shown[ids["w-one"]]["broker"]["quantity"] == 2 * shown[ids["w-one"]]["position"]

            three = ids["w-three"]
            _, _, first = read_events(
                base, f"/stream/sessions/{three}", lambda data: data["partial"] is not None
            )
            assert first["session"]["id"] == three
            assert first["stop_price"] == shown[three]["stop_price"]
            assert len(first["markers"]) == count_rows(rig.engine, three)[1]
            rig.publish_replay(ticks[reversal.publish_until + 40 : reversal.publish_until + 400])
            _, _, moved = read_events(
                base,
                f"/stream/sessions/{three}",
                lambda data: data["partial"] is not None and data["partial"] != first["partial"],
                timeout=60,
            )
            assert moved["partial"]["time"] >= first["partial"]["time"]
            rig.wait_settled()

            detail = client.get(f"/api/sessions/{three}").json()
            assert detail["candles"] and detail["partial"]
            assert len(detail["markers"]) == count_rows(rig.engine, three)[1]
            assert {o["client_order_id"] for o in detail["orders"]} == {
                o.client_order_id for o in rig.sql_orders("w-three")
            }
            assert detail["strategy"]["state"] == rig.state(three).strategy.state
            page = client.get(f"/sessions/{three}").text
            assert 'id="chart"' in page and f'data-stream="/stream/sessions/{three}"' in page
            assert "/static/lightweight-charts.standalone.production.js" in page

            reconcile_all(rig, ids.values())
            position = rig.quantity(three)
            rig.set_position(three, position + 1, "1690")
            shown = sessions_by_id(client.get("/api/fleet").json())
            assert shown[three]["position"] == position + 1
            assert shown[three]["broker_check"] == "mismatch"
            assert shown[three]["cells"]["broker"].endswith("MISMATCH")
            assert shown[ids["w-one"]]["broker_check"] == "match"
            page = client.get("/").text
            assert "check-mismatch" in row_of(page, three)
            assert "MISMATCH" in row_of(page, three)
            assert "check-mismatch" not in row_of(page, ids["w-one"])

            headers, lines, snapshot = read_events(
                base, "/stream/fleet", lambda data: data["type"] == "fleet"
            )
            assert headers["content-type"].startswith("text/event-stream")
            assert lines[0] == "retry: 3000"
            assert "event: snapshot" in lines and any(ln.startswith("id: ") for ln in lines)
            streamed = sessions_by_id(snapshot)
            assert set(streamed) == set(ids.values())
            assert streamed[three]["broker_check"] == "mismatch"
            assert streamed[three]["cells"]["position"] == str(position + 1)


def reconcile_all(rig: Fleet, session_ids: Iterable[str]) -> None:
    """One position check of each session, in this process (it records the broker's
    answer), until each finds it in sync."""
    for sid in session_ids:
        wait_until(
            lambda sid=sid: reconcile_positions(rig.rt, sid).outcome == "in_sync",
            timeout=30,
            interval=0.2,
            what=f"session {sid} in sync with the broker",
        )


# --------------------------------------------------------------------------- status rules


def test_each_status_rule_shows_on_the_fleet(redis_url: str, pg_url: str, tmp_path: Path) -> None:
    """Halted, stopped, needs operator (a roll waiting, a session not trading) and stale (its
    feed stalled), each on a session of its own; one with nothing wrong is trading."""
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        ids = {name: rig.create(name, f"ACC-{name}") for name in ("halted", "stopped", "roll")}
        ids["idle"] = rig.create("idle", "ACC-idle")
        ids["off"] = rig.create("off", "ACC-off")
        ids["lost"] = rig.create("lost", "ACC-lost")
        gold = NewSession("gold", "ACC-gold", "GC", "GCZ13", "sma_cross", dict(ARGS))
        ids["gold"] = create_session(rig.settings, gold).session.id

        set_halted(rig.engine, RiskBook(rig.client, rig.settings.risk), "ACC-halted", True)
        set_session_status(rig.engine, ids["stopped"], "stopped")
        roll = create_roll(rig.engine, ids["roll"], "ESZ13", "ESH14", datetime.now(UTC))
        set_status(rig.engine, roll.id, "needs_operator", "positions do not add up")
        with rig.store.locked(ids["off"], wait_s=5) as lease:
            rig.store.write(lease, StateChanges.of({"trading": False}))
        set_stalled(rig.client, "GCZ13", datetime.now(UTC), 30)
        assert rig.store.delete(ids["lost"])

        with console(rig.settings) as client:
            shown = sessions_by_id(client.get("/api/fleet").json())
            page = client.get("/").text
            lost = client.get(f"/sessions/{ids['lost']}")
            assert lost.status_code == 200
            assert "No state in Redis: the session needs recovery." in lost.text
            assert client.get(f"/api/sessions/{ids['lost']}").json()["strategy"] is None
    expected = {
        "halted": ("halted", "account halted"),
        "stopped": ("stopped", "stopped"),
        "roll": ("needs_operator", "roll needs operator"),
        "off": ("needs_operator", "not trading"),
        "lost": ("needs_operator", "no state in Redis (needs recovery)"),
        "gold": ("stale", "feed stalled"),
        "idle": ("trading", None),
    }
    for name, (status, reason) in expected.items():
        row = shown[ids[name]]
        assert row["status"] == status, (name, row["reasons"])
        assert row["reasons"] == ([] if reason is None else [reason]), name
        assert f'data-status="{status}"' in row_of(page, ids[name])
    assert shown[ids["roll"]]["cells"]["status"] == "needs operator"
    assert shown[ids["gold"]]["contract"] == "GCZ13"


# --------------------------------------------------------------------------- who may act


def test_a_viewer_sees_no_action_an_operator_sees_each_with_its_token(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    key = "a-console-key-of-at-least-32-characters"
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url, web_secret_key=key) as rig:
        sid = rig.create("one", "ACC-1")
        roll = create_roll(rig.engine, sid, "ESZ13", "ESH14", datetime.now(UTC))
        set_status(rig.engine, roll.id, "failed", "the close never filled")
        pages = ["/", f"/sessions/{sid}", "/accounts", "/rolls", "/events"]
        with console(rig.settings, VIEWER) as client:
            for path in pages:
                html = client.get(path).text
                assert 'class="action"' not in html, path
                assert "data-action" not in html and CSRF not in html, path
                assert 'id="nav-flower"' in html and "victor" in html
        with console(rig.settings) as client:
            fleet = client.get(with_flash(rig.settings.web, "/", "halted ACC-1")).text
            assert '<p class="flash" id="flash" role="status">halted ACC-1</p>' in fleet
            for action, url in [
                ("halt-fleet", "/actions/halt"),
                ("wind-down", "/actions/wind-down"),
                ("flatten", f"/sessions/{sid}/flatten"),
                ("stop", f"/sessions/{sid}/stop"),
                ("reconcile", f"/sessions/{sid}/reconcile"),
            ]:
                form = re.search(
                    rf'<form method="post" action="{url}" class="action" data-action="{action}"'
                    r".*?</form>",
                    fleet,
                    re.S,
                )
                assert form is not None, action
                assert f'name="csrf_token" value="{CSRF}"' in form.group(0)
                assert '<input type="hidden" name="next" value="/">' in form.group(0)
            assert 'id="kill-switch"' in fleet
            session_page = client.get(f"/sessions/{sid}").text
            for action in ("flatten", "stop", "start", "reconcile", "roll", "roll-resume"):
                assert f'data-action="{action}"' in session_page, action
            assert f'action="/sessions/{sid}/roll"' in session_page and 'name="to"' in session_page
            rolls = client.get("/rolls").text
            assert f'action="/rolls/{roll.id}/resume"' in rolls
            assert f'action="/rolls/{roll.id}/abort"' in rolls
            accounts = client.get("/accounts").text
            assert 'data-action="halt-account"' in accounts
            assert '<input type="hidden" name="account" value="ACC-1">' in accounts


# --------------------------------------------------------------------------- events


def test_events_are_filtered_and_a_bad_filter_is_refused(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        one, two = rig.create("one", "ACC-1"), rig.create("two", "ACC-2")
        record_event(rig.engine, one, "roll", "info", "roll begun")
        record_event(rig.engine, one, "roll", "error", "roll failed")
        record_event(rig.engine, two, "risk", "error", "entry refused")
        record_event(rig.engine, None, "feed", "warning", "feed stalled")
        with console(rig.settings) as client:

            def messages(query: str) -> list[str]:
                response = client.get("/api/events" + query)
                assert response.status_code == 200, response.text
                return [e["message"] for e in response.json()["events"]]

            assert messages("") == ["feed stalled", "entry refused", "roll failed", "roll begun"]
            assert messages("?kind=roll") == ["roll failed", "roll begun"]
            assert messages("?severity=error") == ["entry refused", "roll failed"]
            assert messages(f"?kind=roll&severity=error&session={one}") == ["roll failed"]
            assert messages(f"?session={two}") == ["entry refused"]
            assert messages("?kind=&severity=&session=") == messages("")
            page = client.get("/events?kind=roll").text
            assert "roll failed" in page and "entry refused" not in page
            assert '<option value="roll" selected>' in page

            for query in ("?kind=bogus", "?severity=loud", "?session=nobody", "?kind=ROLL"):
                assert client.get("/events" + query).status_code == 400, query
                assert client.get("/api/events" + query).status_code == 400, query


# --------------------------------------------------------------------------- reading writes nothing


def _value(client: redis.Redis, key: bytes) -> Any:
    """What ``key`` holds, compared by content (a hash's DUMP may reorder as Redis
    rehashes it on reads)."""
    kind = client.type(key)
    readers: dict[bytes, Callable[[], Any]] = {
        b"string": lambda: client.get(key),
        b"hash": lambda: client.hgetall(key),
        b"list": lambda: client.lrange(key, 0, -1),
        b"set": lambda: client.smembers(key),
        b"zset": lambda: client.zrange(key, 0, -1, withscores=True),
        b"stream": lambda: client.xrange(key),
    }
    return kind, readers[kind](), client.pttl(key) > 0


def _everything(rig: Fleet) -> tuple[dict[bytes, Any], dict[str, int]]:
    """Every key of the sessions' Redis and the paper broker's with its content, and the
    row count of every table."""
    stores = {}
    for client in (rig.client, rig.broker_client):
        for key in client.scan_iter(match="*", count=1_000):
            stores[key] = _value(client, key)
    with Session(rig.engine) as db:
        counts = {
            table.__tablename__: db.scalar(select(func.count()).select_from(table)) or 0
            for table in (TradingSessionRow, OrderRow, FillRow, EventRow, RollRow, AccountRow)
        }
    return stores, counts


def test_an_unknown_session_is_not_found_and_reading_writes_nothing(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        sid = rig.create("one", "ACC-1")
        with console(rig.settings) as client:
            before = _everything(rig)
            for path in ("/sessions/", "/api/sessions/", "/stream/sessions/"):
                response = client.get(path + "no-such-session")
                assert response.status_code == 404, path
                assert "unknown session: no-such-session" in response.text
            for path in ("/", "/api/fleet", f"/sessions/{sid}", f"/api/sessions/{sid}"):
                assert client.get(path).status_code == 200
            for path in ("/accounts", "/rolls", "/events", "/api/accounts", "/api/rolls"):
                assert client.get(path).status_code == 200
            assert _everything(rig) == before


def test_the_vendored_chart_library_is_served_from_the_console() -> None:
    with console(Settings()) as client:
        response = client.get("/static/lightweight-charts.standalone.production.js")
        assert response.status_code == 200
        assert "javascript" in response.headers["content-type"]
        assert "TradingView Lightweight Charts" in response.text[:300]
        assert "v4.2.3" in response.text[:300]
        assert (
            response.content
            == (STATIC_DIR / "lightweight-charts.standalone.production.js").read_bytes()
        )
        script = client.get("/static/console.js")
        assert script.status_code == 200 and "EventSource" in script.text
        assert client.get("/static/console.css").status_code == 200
