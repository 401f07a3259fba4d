"""The drills: what each one does to the fleet while the scenario replays.

Each drill is a name, one line saying what it does, where beat runs, and ``inject``: called
once the feed has started, it injects its faults at points of the replay (``Rig.at``), returns
how many it injected and the moment the last one ended (``Fault``); the runner then measures
how long until every session had read every tick published by that moment.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from trading.exceptions import BadInput
from workers.tools.drill.hosts import HostProcesses
from workers.tools.drill.net import WORKER_HOSTS, Network
from workers.tools.drill.services import Services

STORM_KILLS = 50
STORM_STOPS = 2
BROKER_OUTAGE_S = 60.0
STALE_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class Fault:
    count: int
    ended_at: float | None
    """``time.monotonic()`` when the last fault ended; None: it lasts the whole replay."""


class Rig(Protocol):
    """What a drill reaches while the scenario replays."""

    net: Network
    services: Services
    hosts: HostProcesses
    rng: random.Random
    lease_s: float

    def at(self, fraction: float) -> None:
        """Wait until ``fraction`` of the replay's wall time has passed."""

    def feed_running(self) -> bool: ...

    def sessions_labels(self) -> set[str]:
        """Every session of the scenario, by label."""

    def stale_sessions(self) -> set[str]:
        """The sessions whose last positions pass found the broker not answering."""

    def violated(self, what: str) -> None:
        """Record what the drill's own check found broken (the drill fails)."""

    def kill_a_send(self) -> int:
        """Kill the whole host of an order send in progress, and bring it back once that order
        is final (``workers.tools.drill.host_kill``); 1 if a host was killed."""


@dataclass(frozen=True, slots=True)
class Drill:
    name: str
    what: str
    inject: Callable[[Rig], Fault]
    beats: tuple[str, ...] = ("w1",)
    impaired: bool = False
    """Delay and loss between every host and the services for the whole replay."""
    fuzz: bool = False
    """The feed publishes the fuzzed plan of the replay (``workers.tools.drill.fuzz``)."""
    roll: bool = False
    """Once the replay settled, roll the ES sessions, killing the host at each roll step."""
    faults_are_refusals: bool = False
    """The faults are the fan-outs beat's guard refused (the second beat's), counted at the end."""
    settings: tuple[tuple[str, str], ...] = ()
    """Settings of this drill's processes beside the runner's (variable, value)."""


def _none(rig: Rig) -> Fault:
    return Fault(0, None)


def _impaired(rig: Rig) -> Fault:
    """The links impaired for the whole replay: every worker host's and the feed's."""
    return Fault(len(WORKER_HOSTS) + 1, None)


def _partition(rig: Rig) -> Fault:
    rig.at(0.3)
    rig.net.partition("w1")
    time.sleep(2 * rig.lease_s)  # the fault's own length: twice the lease, as the issue asks
    rig.net.heal("w1")
    return Fault(1, time.monotonic())


def _storm(rig: Rig) -> Fault:
    """50 SIGKILLs of random worker processes over the middle of the replay, and twice a
    SIGSTOP of a tick worker's pool held past the lease, then SIGCONT."""
    faults = 0
    stops_at = {STORM_KILLS // 3, 2 * STORM_KILLS // 3}
    for n in range(STORM_KILLS):
        rig.at(0.15 + 0.6 * n / STORM_KILLS)
        if rig.hosts.kill_random_worker(rig.rng) is not None:
            faults += 1
        if n in stops_at:
            faults += _stop_past_lease(rig)
    return Fault(faults, time.monotonic())


def _stop_past_lease(rig: Rig) -> int:
    host = rig.rng.choice(WORKER_HOSTS)
    pids = rig.hosts.worker_pids((host,))
    if not pids:
        return 0
    pid = rig.rng.choice(pids)
    rig.hosts.pause(pid)
    time.sleep(2 * rig.lease_s)  # held past its lease: its writes must be refused after
    rig.hosts.resume(pid)
    return 1


def _redis_restart(rig: Rig) -> Fault:
    rig.at(0.4)
    rig.services.restart_redis_empty()
    return Fault(1, time.monotonic())


def _postgres_restart(rig: Rig) -> Fault:
    rig.at(0.4)
    rig.services.restart_postgres()
    return Fault(1, time.monotonic())


def _broker_outage(rig: Rig) -> Fault:
    """The broker's process frozen for a minute: its connections stay open and nothing
    answers. The drill runs with the default positions pass (every 30 s): every session goes
    stale at its first failed pass (checked: a session that never does fails the drill) and
    would stop entering at the third (90 s), so a minute's outage leaves entries open, the
    orders decided meanwhile wait in their sends and go out when the broker answers again, and
    the fills equal the reference's."""
    rig.at(0.2)
    rig.services.pause_broker()
    ends = time.monotonic() + BROKER_OUTAGE_S
    went_stale: set[str] = set()
    while time.monotonic() < ends:  # the outage itself, watched
        went_stale |= rig.stale_sessions()
        time.sleep(min(STALE_POLL_S, max(0.0, ends - time.monotonic())))
    rig.services.resume_broker()
    never = sorted(rig.sessions_labels() - went_stale)
    if never:
        rig.violated(f"never marked stale while the broker did not answer: {', '.join(never)}")
    return Fault(1, time.monotonic())


def _sends_killed(rig: Rig) -> Fault:
    """Twice, the host of an order being sent killed whole (the roll's kills follow). Beat
    runs on two hosts here, as a fleet that must survive losing a host deploys it (its period
    guard makes two beats one): the sweeps that carry on the dead host's work run in beat."""
    kills = 0
    for fraction in (0.3, 0.6):
        rig.at(fraction)
        kills += rig.kill_a_send()
    return Fault(kills, time.monotonic())


def _two_beats(rig: Rig) -> Fault:
    return Fault(1, None)


DRILLS: tuple[Drill, ...] = (
    Drill("partition", "w1 cut off from the services for twice the lease, then healed", _partition),
    Drill("kill-storm", "50 SIGKILLs of worker processes, 2 SIGSTOPs past the lease", _storm),
    Drill("redis-restart", "Redis restarted empty: state and streams gone", _redis_restart),
    Drill("postgres-restart", "PostgreSQL restarted mid-replay", _postgres_restart),
    Drill(
        "broker-outage",
        f"the broker answers nothing for {BROKER_OUTAGE_S:.0f} s",
        _broker_outage,
        settings=(("TRADEFLEET_RECONCILE_POSITIONS_INTERVAL_S", "30"),),
    ),
    Drill(
        "two-beats",
        "beat on two hosts at once",
        _two_beats,
        beats=("w1", "w2"),
        faults_are_refusals=True,
    ),
    Drill(
        "netem",
        "20 ms +- 10 ms delay and 1 % loss between every host and the services",
        _impaired,
        impaired=True,
    ),
    Drill(
        "host-kill",
        "a whole worker host SIGKILLed while sending an order and at each step of a roll",
        _sends_killed,
        beats=("w1", "w2"),
        roll=True,
    ),
    Drill(
        "fuzzed-feed",
        "malformed, NaN, negative, backwards, huge, unknown and duplicated entries",
        _none,
        fuzz=True,
    ),
)
SHORT_DRILLS = ("partition", "kill-storm", "postgres-restart")
"""The short form the test suite runs (on the short scenario)."""

REFERENCE = Drill("reference", "no fault", _none)
_BY_NAME = {drill.name: drill for drill in DRILLS}


def drills_named(names: list[str]) -> list[Drill]:
    """The drills by name, in the order given (every drill with no names)."""
    if not names:
        return list(DRILLS)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        known = ", ".join(_BY_NAME)
        raise BadInput(f"unknown drill {', '.join(unknown)} (known: {known})")
    return [_BY_NAME[n] for n in names]
