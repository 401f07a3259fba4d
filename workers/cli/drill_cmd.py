"""``tradefleet drill [NAME ...]``: the fleet on hosts of its own, faults injected, judged.

It builds a network of its own on this machine (Linux network namespaces: a services host with
Redis, PostgreSQL and the broker; three worker hosts; a feed host), runs the scenario once
undisturbed and once per drill, and prints a table; with ``--json`` the last stdout line is
``{"drills": [{"name", "faults", "ticks_lost", "orders_duplicated", "position_mismatches",
"fills_differing", "recovery_s", ...}, ...]}``. Exit code 1 when a drill failed, 2 when it
cannot run here (not root, no ``ip``). Everything is torn down afterwards, also on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Annotated

import typer
from rich.console import Console

from trading.exceptions import BadInput
from workers.settings import get_settings
from workers.tools.drill.drills import SHORT_DRILLS, drills_named
from workers.tools.drill.feed import run_feed
from workers.tools.drill.report import drill_json, drill_table
from workers.tools.drill.run import run_drills
from workers.tools.drill.scenario import FULL, SHORT, scenario_named


def drill(
    names: Annotated[
        list[str] | None, typer.Argument(help="Drills to run (all of them by default).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="End with one JSON line of the figures.")
    ] = False,
    short: Annotated[
        bool,
        typer.Option(
            "--short", help="The test suite's form: three drills (unless named) on 30 s of replay."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the drills' random choices.")] = 7,
) -> int:
    """Run the fleet drills across hosts of its own and print their figures."""
    if os.geteuid() != 0:
        raise BadInput("drills build network namespaces: run them as root")
    if shutil.which("ip") is None:
        raise BadInput("drills need `ip` (Debian's iproute2): apt-get install iproute2")
    chosen = drills_named(list(names or (SHORT_DRILLS if short else ())))
    scenario = SHORT if short else FULL
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160
    workdir = get_settings().paths.data_dir / "drills"
    report = run_drills(
        scenario, chosen, workdir, lambda line: console.print(line, markup=False), seed
    )
    console.print(drill_table(report))
    for fig in report.figures:
        for note in fig.notes:
            console.print(f"{fig.name}: {note}", markup=False, soft_wrap=True)
    console.print(f"logs: {report.log_dir}", markup=False, soft_wrap=True)
    if json_out:
        typer.echo(json.dumps(drill_json(report), separators=(",", ":")))
    return 0 if report.passed else 1


def drill_feed(
    scenario: Annotated[str, typer.Argument(help="The scenario to publish (full or short).")],
    fuzz: Annotated[
        int | None, typer.Option(metavar="SEED", help="Publish the fuzzed plan of this seed.")
    ] = None,
) -> int:
    """The drill's feed host: publish a scenario's replay to the fleet's Redis, paced."""
    typer.echo(run_feed(scenario_named(scenario), get_settings(), fuzz))
    return 0


command = drill
