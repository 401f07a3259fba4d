"""The host-kill drill's two parts: whole worker hosts killed while an order is being sent,
and at each step of a roll in progress.

A host is killed by SIGKILL to every process in its namespace (``HostProcesses.down``): the
Celery messages it held are unacknowledged and would come back only after the visibility
timeout (an hour), so what carries on is the fleet's own: beat's send sweep and roll sweep.
The host is found by asking the workers what they run (Celery's ``inspect``: active, reserved
and scheduled tasks), killed, and brought back once the order is final or the roll has moved
past the step (its workers then start again, as after a reboot). Each kill's time until the
work went on is recorded; more than ``WENT_ON_WITHIN_S`` is a violation.

The roll: once the replay settled, every session on ``ROLL_FROM`` rolls to ``ROLL_TO``, decided
at the end of the scenario's window; the roll's orders fill on the first print of each
contract after it, published once every roll has sent its close and the host of each roll's
wait for that fill was killed (no strategy runs meanwhile). Judged apart from the replay
(observed before the roll; the reference does not roll): every roll ``done``, the session on
the new contract holding the signed quantity it held before, as the broker does, the old
contract flat there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

from celery import Celery
from sqlalchemy.engine import Engine

from workers.brokers.commands import QueryPositions
from workers.brokers.paper.broker import PaperBroker
from workers.db.order_rows import FINAL_STATUSES, get_order_row
from workers.db.roll_rows import get_roll
from workers.dispatch import names
from workers.feeds.replay import ReplayConfig, ReplaySource
from workers.rolls.chain import start_roll
from workers.runtime import Runtime, make_publisher
from workers.settings import Settings
from workers.state.store import StateStore
from workers.tools.drill.hosts import HostProcesses

ROLL_FROM, ROLL_TO = "ESZ13", "ESH14"
WENT_ON_WITHIN_S = 60.0
FIND_S = 20.0
"""How long to look for a host holding the work before giving up on that kill."""
ROLL_DONE_S = 240.0
FINISHED = frozenset({"done", "failed", "needs_operator", "aborted"})
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Kill:
    what: str
    """Whose host, doing what."""
    pending: bool
    """The work had not moved on when the host was down (else it finished as the kill landed)."""
    took_s: float | None
    """Until the work went on (None: not within twice ``WENT_ON_WITHIN_S``)."""


@dataclass
class KillLog:
    """Each kill: what it hit and how long until the work went on."""

    kills: list[Kill] = field(default_factory=list)

    def record(self, what: str, pending: bool, took_s: float | None) -> None:
        self.kills.append(Kill(what, pending, None if took_s is None else round(took_s, 2)))

    def violations(self) -> list[str]:
        return [
            f"after the kill of {k.what}, the work did not go on within {WENT_ON_WITHIN_S:.0f}s"
            for k in self.kills
            if k.took_s is None or k.took_s > WENT_ON_WITHIN_S
        ]

    def summary(self) -> str:
        """One line for the drill's notes."""
        pending = [k for k in self.kills if k.pending]
        longest = max((k.took_s or 0.0 for k in pending), default=0.0)
        return (
            f"{len(self.kills)} host kills, {len(pending)} with the work still pending "
            f"(the others landed as it finished); the longest wait for it to go on {longest:.1f}s"
        )

    @property
    def longest_s(self) -> float:
        return max((k.took_s or 0.0 for k in self.kills), default=0.0)

    def as_json(self) -> list[dict[str, object]]:
        return [{"what": k.what, "pending": k.pending, "took_s": k.took_s} for k in self.kills]


def holders(app: Celery, task_prefix: str, first_arg: Callable[[Any], bool]) -> dict[str, Any]:
    """Worker host → the first argument of a task it holds whose name starts with
    ``task_prefix`` and whose first argument passes ``first_arg`` (running, reserved or
    waiting out a countdown)."""
    inspect = app.control.inspect(timeout=0.5)
    found: dict[str, Any] = {}
    for reply in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        for node, tasks in (reply or {}).items():
            for task in cast(list[dict[str, Any]], tasks):
                request = cast(dict[str, Any], task.get("request", task))
                args = request.get("args") or []
                name = str(request.get("name") or "")
                if name.startswith(task_prefix) and args and first_arg(args):
                    found.setdefault(node.split("-", 1)[0], args)
    return found


def kill_a_send(
    app: Celery,
    hosts: HostProcesses,
    engine: Engine,
    log: KillLog,
    hold: Callable[[], AbstractContextManager[None]],
) -> int:
    """Kill the host of an order send in progress (a send task's or a batch's: their names
    share the prefix), wait until that order's row is final, bring the host back; 1 if a
    host was killed. A send takes milliseconds, so the broker is
    held (``hold``: frozen) while the send is looked for (up to ``FIND_S``): the send then
    waits on the broker, as one does when the broker is slow, and its host dies mid-send."""
    with hold():
        deadline = time.monotonic() + FIND_S
        found: dict[str, Any] = {}
        while not found and time.monotonic() < deadline:
            found = holders(app, names.ORDERS_SEND, lambda args: bool(_sent_order_of(args)))
            if found:
                host, args = next(iter(found.items()))
                hosts.down(host)
            else:
                time.sleep(POLL_S)
    if not found:
        return 0
    killed = time.monotonic()
    coid = _sent_order_of(args)
    pending = not _final(engine, coid)
    took = _until(partial(_final, engine, coid), killed)
    hosts.up(host)
    log.record(f"{host} sending {coid}", pending, took)
    return 1


def _sent_order_of(args: list[Any]) -> str:
    """The order a send task holds (``tradefleet.orders.send``: its own; ``send_batch``: its
    last, which goes out after the others), or "" for a task of another shape."""
    if len(args) == 2:
        return str(args[1])
    if len(args) == 1 and isinstance(args[0], list) and args[0]:
        return str(args[0][-1][1])
    return ""


def _final(engine: Engine, coid: str) -> bool:
    row = get_order_row(engine, coid)
    return row is not None and row.status in FINAL_STATUSES


def _until(done: Callable[[], bool], since: float) -> float | None:
    deadline = since + WENT_ON_WITHIN_S * 2
    while time.monotonic() < deadline:
        if done():
            return time.monotonic() - since
        time.sleep(POLL_S * 4)
    return None


@dataclass(frozen=True, slots=True)
class RollTarget:
    label: str
    session_id: str
    account: str
    roll_id: int
    quantity: int
    """The signed position the session held when the roll was decided."""


def roll_with_kills(
    settings: Settings,
    app: Celery,
    hosts: HostProcesses,
    sessions: Mapping[str, tuple[str, str, str]],
    decided_at: datetime,
    log: KillLog,
) -> list[RollTarget]:
    """Roll every session on ``ROLL_FROM``, killing the host that holds a roll's work at each
    step it is met at; the rolls, once finished (or at the deadline)."""
    rt = Runtime(settings)
    store = StateStore(rt.redis, settings.state.lock_ttl_ms)
    targets = []
    for label, (sid, account, contract) in sessions.items():
        if contract != ROLL_FROM:
            continue
        held = store.load(sid).open_position
        row = start_roll(rt, app, sid, ROLL_TO, decided_at=decided_at)
        targets.append(
            RollTarget(label, sid, account, row.id, 0 if held is None else held.quantity)
        )
    ids = {t.roll_id for t in targets}

    def where(roll_id: int) -> tuple[str, str]:
        row = get_roll(rt.engine, roll_id)
        return ("", "missing") if row is None else (row.step, row.status)

    hit: set[tuple[int, str]] = set()
    closed_since: list[float] = []

    def closed_and_awaits_hit() -> bool:
        """Every close sent, and the host of each roll's wait for its close's fill killed
        (looked for up to ``FIND_S``): that wait cannot end before the first prints."""
        at = {i: where(i) for i in ids}
        if not all(s in FINISHED or step not in {"begin", "close"} for step, s in at.values()):
            return False
        closed_since.append(time.monotonic())
        waited = time.monotonic() - closed_since[0]
        return waited > FIND_S or all((i, "await_close") in hit for i in ids)

    def finished() -> bool:
        return all(where(i)[1] in FINISHED for i in ids)

    _kill_roll_holders(app, hosts, ids, where, closed_and_awaits_hit, hit, log)
    _publish_first_prints(rt, settings, app, decided_at)
    _kill_roll_holders(app, hosts, ids, where, finished, hit, log)
    return targets


def _kill_roll_holders(
    app: Celery,
    hosts: HostProcesses,
    ids: set[int],
    where: Callable[[int], tuple[str, str]],
    done: Callable[[], bool],
    hit: set[tuple[int, str]],
    log: KillLog,
) -> None:
    """Until ``done``: each time a host holds a roll's step that no kill hit yet, kill it and
    wait until the roll goes on (its row moved, or another host holds its step: the sweep
    resumed it), then bring the host back."""
    deadline = time.monotonic() + ROLL_DONE_S
    while not done() and time.monotonic() < deadline:
        found = holders(app, names.ROLL_STEP_PREFIX, lambda args: int(args[0]) in ids)
        for host, args in found.items():
            roll_id = int(args[0])
            at = where(roll_id)
            if (roll_id, at[0]) in hit or at[1] in FINISHED:
                continue  # hit already, or finished: its last task is ending, nothing to carry
            hit.add((roll_id, at[0]))
            hosts.down(host)
            killed = time.monotonic()
            pending = where(roll_id) == at
            took = _until(partial(_went_on, app, where, roll_id, at, host), killed)
            hosts.up(host)
            log.record(f"{host} at roll {roll_id} {at[0]}", pending, took)
            break
        time.sleep(POLL_S)


def _went_on(
    app: Celery,
    where: Callable[[int], tuple[str, str]],
    roll_id: int,
    was: tuple[str, str],
    killed_host: str,
) -> bool:
    if where(roll_id) != was:
        return True
    held = holders(app, names.ROLL_STEP_PREFIX, lambda args: int(args[0]) == roll_id)
    return any(host != killed_host for host in held)


def _publish_first_prints(rt: Runtime, settings: Settings, app: Celery, after: datetime) -> None:
    """The first print of each contract after the decision: it fills the roll's orders."""
    publisher = make_publisher(rt.redis, settings, app)
    for contract in (ROLL_FROM, ROLL_TO):
        config = ReplayConfig("ES", contract, after.date(), after.date())
        source = ReplaySource(config, settings.paths.market_data_dir)
        first = next(t for t in source.ticks() if t.time >= after)
        publisher.publish(contract, [first])


def roll_violations(
    targets: list[RollTarget], engine: Engine, store: StateStore, broker: PaperBroker
) -> list[str]:
    """What is wrong with the rolls once finished: not done, or the session and the broker
    not holding the signed quantity on the new contract and nothing on the old."""
    out = []
    for t in targets:
        row = get_roll(engine, t.roll_id)
        status = "missing" if row is None else row.status
        if status != "done":
            out.append(f"{t.label}: roll {t.roll_id} is {status}")
            continue
        state = store.load(t.session_id)
        held = 0 if state.open_position is None else state.open_position.quantity
        there = broker.positions(QueryPositions(t.account))
        got = (state.session.contract, held, there.get(ROLL_TO, 0), there.get(ROLL_FROM, 0))
        if got != (ROLL_TO, t.quantity, t.quantity, 0):
            out.append(
                f"{t.label}: after the roll {got[0]} {got[1]}, broker {ROLL_TO} {got[2]} "
                f"and {ROLL_FROM} {got[3]}; expected {t.quantity} on {ROLL_TO}"
            )
    return out
