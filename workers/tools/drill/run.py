"""Running the drills: one network and services host for the whole command, then the
reference and each drill as a fresh run (``workers.tools.drill.one_run``), judged against the
reference.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trading.exceptions import ServiceUnavailable
from workers.tools.drill.drills import REFERENCE, Drill
from workers.tools.drill.judge import DrillFigures, judge
from workers.tools.drill.net import Network, sweep_leftovers
from workers.tools.drill.one_run import OneRun
from workers.tools.drill.scenario import Scenario
from workers.tools.drill.services import Services

Progress = Callable[[str], None]
"""Where the lines saying how the drills go are written."""


@dataclass(frozen=True, slots=True)
class DrillReport:
    scenario: str
    figures: tuple[DrillFigures, ...]
    seconds: float
    log_dir: Path

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.figures)


def run_drills(
    scenario: Scenario, drills: list[Drill], workdir: Path, progress: Progress, seed: int = 7
) -> DrillReport:
    """The reference, then each drill; everything torn down afterwards, also on Ctrl-C and
    SIGTERM (raised here as ``KeyboardInterrupt`` so that every ``with`` unwinds). SIGINT is
    handled even when the process was started with it ignored (a non-interactive shell's
    background job): a SIGINT sent to the drill always tears it down."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run_drills(scenario, drills, workdir, progress, seed)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_drills(
    scenario: Scenario, drills: list[Drill], workdir: Path, progress: Progress, seed: int
) -> DrillReport:
    started = time.monotonic()
    sweep_leftovers()
    log_dir = (
        workdir / f"drill-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    figures: list[DrillFigures] = []
    with Network(log_dir=log_dir) as net, Services(net, log_dir / "services") as services:
        progress(f"network up ({', '.join(net.hosts)}); services on {net.services_ip}")
        progress("reference: the scenario without faults")
        reference_run = OneRun(net, services, scenario, REFERENCE, log_dir, 0, seed)
        reference, _, lag = reference_run.run_in(net)
        if reference_run.unsettled or lag is None:
            raise ServiceUnavailable(
                f"the reference run did not settle ({'; '.join(reference_run.unsettled[:3])}): "
                f"nothing to judge the drills against; logs: {reference_run.log_dir}"
            )
        figures.append(judge(REFERENCE.name, reference, reference, 0, lag))
        for index, drill in enumerate(drills, start=1):
            progress(f"{drill.name}: {drill.what}")
            run = OneRun(net, services, scenario, drill, log_dir, index, seed)
            outcome, fault, recovery = run.run_in(net)
            result = judge(
                drill.name,
                reference,
                outcome,
                fault.count,
                recovery,
                injected=run.injected,
                unsettled=run.unsettled,
                violations=run.violations,
            )
            figures.append(result)
            for remark in run.remarks:
                progress(f"{drill.name}: {remark}")
            progress(f"{drill.name}: {'passed' if result.passed else 'FAILED'}")
    return DrillReport(scenario.name, tuple(figures), time.monotonic() - started, log_dir)
