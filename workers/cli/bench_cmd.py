"""``tradefleet bench``: run the tick-path benchmark and print its figures.

Progress lines and a summary table go to stdout first; with ``--json`` the last stdout line is
one JSON object (``workers.tools.bench.run.BenchResult``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from workers.tools.bench.load import percentile
from workers.tools.bench.run import BenchConfig, BenchReport, Phase, cpu_summary, run_bench

_DEFAULT = BenchConfig()


def bench(
    json_out: Annotated[
        bool, typer.Option("--json", help="End with one JSON line of the figures.")
    ] = False,
    sessions: Annotated[
        int, typer.Option(help="Sessions of the flat-out and latency runs.")
    ] = _DEFAULT.sessions,
    workers: Annotated[
        int, typer.Option(help="Worker processes serving the ticks queue.")
    ] = _DEFAULT.workers,
    seconds: Annotated[
        float,
        typer.Option(
            help="Length of each latency run (a whole minute holds one candle close per session)."
        ),
    ] = _DEFAULT.seconds,
    rate: Annotated[
        float, typer.Option(help="Ticks/s offered in the latency run.")
    ] = _DEFAULT.rate,
    big_sessions: Annotated[
        int, typer.Option(help="Sessions of the high-rate latency run.")
    ] = _DEFAULT.big_sessions,
    big_rate: Annotated[
        float, typer.Option(help="Ticks/s offered in the high-rate latency run.")
    ] = _DEFAULT.big_rate,
    ticks: Annotated[
        int, typer.Option(help="Ticks published in the flat-out run.")
    ] = _DEFAULT.ticks,
    idle_seconds: Annotated[
        float, typer.Option(help="Length of the idle run (no ticks; the fleet's own CPU).")
    ] = _DEFAULT.idle_seconds,
    capacity_rounds: Annotated[
        int,
        typer.Option(help="Rounds of one tick per session in the capacity run (big sessions)."),
    ] = _DEFAULT.capacity_rounds,
    order_sessions: Annotated[
        int, typer.Option(help="Sessions of the orders run (contracts of their own).")
    ] = _DEFAULT.order_sessions,
    order_share: Annotated[
        float,
        typer.Option(help="Share of the orders run's sessions that buy at the minute boundary."),
    ] = _DEFAULT.order_share,
    only: Annotated[
        Phase | None,
        typer.Option(help="Run this phase alone (the other figures read 0)."),
    ] = None,
) -> None:
    """Measure the tick path: throughput, tick-to-decision latency, one-process baseline."""
    config = BenchConfig(
        sessions=sessions,
        workers=workers,
        seconds=seconds,
        rate=rate,
        big_sessions=big_sessions,
        big_rate=big_rate,
        ticks=ticks,
        idle_seconds=idle_seconds,
        capacity_rounds=capacity_rounds,
        order_sessions=order_sessions,
        order_share=order_share,
        only=only,
    )
    console = Console(highlight=False)
    report = run_bench(config, lambda line: console.print(line, markup=False, soft_wrap=True))
    console.print(summary_table(report))
    for note in report.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if json_out:
        typer.echo(json.dumps(report.result.to_json(), separators=(",", ":")))


def summary_table(report: BenchReport) -> Table:
    cfg = report.config
    res = report.result
    table = Table(title="tradefleet tick path")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("conditions")
    flat = f"{report.flat_ticks:,} ticks, {cfg.sessions} sessions, {cfg.workers} workers"
    table.add_row("end to end", f"{res.ticks_per_s:,.0f} ticks/s", flat)
    table.add_row(
        "baseline (1 process)",
        f"{res.baseline_ticks_per_s:,.0f} ticks/s",
        "same steps, no Redis, no Celery",
    )
    table.add_row("end to end ÷ baseline", f"{res.end_to_end_ratio:.2f}", "")
    if report.idle is not None:
        table.add_row(
            "idle", f"{res.idle_cores:.3f} cores", f"no ticks for {cfg.idle_seconds:.0f}s"
        )
    table.add_row(
        "capacity",
        f"{res.capacity_steps_per_s:,.0f} steps/s",
        f"one tick per step, {cfg.big_sessions} sessions, flat out",
    )
    for name, paced, sessions in (
        ("latency", report.latency, cfg.sessions),
        ("latency high rate", report.latency_big, cfg.big_sessions),
        ("latency at 50% capacity", report.at_50pct, cfg.big_sessions),
        ("latency at 80% capacity", report.at_80pct, cfg.big_sessions),
    ):
        where = (
            f"{paced.achieved_per_s:,.0f} ticks/s over {sessions} sessions, {paced.steps:,} steps,"
            f" {paced.closes:,} candle closes"
        )
        for p in (50, 99, 99.9):
            table.add_row(f"{name} p{p}", f"{paced.percentile_ms(p):.2f} ms", where)
        if paced.cpu is not None and paced.steps:
            per_step = paced.cpu_per_step_us(paced.cpu.total_s)
            table.add_row(f"{name} cpu", f"{per_step:.0f} us/step", cpu_summary(paced))
    run = report.orders_run
    if run.orders:
        where = f"{run.orders} market orders of {run.sessions} sessions at one minute boundary"
        for p in (50, 99):
            table.add_row(
                f"tick to order accepted p{p}",
                f"{percentile(run.accepted_us, p) / 1000:.2f} ms",
                where,
            )
        table.add_row(
            "order and fill cpu",
            f"{res.cpu_ms_per_order:.2f} ms/order",
            "boundary round above its control round: redis, tick and orders workers",
        )
    table.add_row(
        "orders decided", str(report.orders), f"all runs (baseline: {report.baseline_orders})"
    )
    table.add_row("ticks rejected", str(report.flat_rejected), "flat-out run")
    return table


command = bench


if __name__ == "__main__":
    typer.run(bench)
