"""Task names: one home (workers.dispatch.names), a queue for each from its kind."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from workers.celery_app import create_app
from workers.dispatch import names
from workers.settings import QueueSettings, RedisSettings, Settings

ROOT = Path(__file__).resolve().parents[3]
NAMES = ROOT / "workers" / "dispatch" / "names.py"
TASK = re.compile(r"tradefleet\.(health|ticks|orders|reconcile|rolls)\.\w*$")


def test_each_task_runs_on_its_kinds_queue() -> None:
    queues = QueueSettings(ticks="t", orders="o", reconcile="r", rolls="l", default="d")
    assert names.queue_of(names.TICKS_DRAIN, queues) == "t"
    assert names.queue_of(names.ORDERS_POLL, queues) == "o"
    assert names.queue_of(names.RECOVER, queues) == "r"
    assert names.queue_of(names.roll_step("await_close"), queues) == "l"
    assert names.queue_of(names.HEALTH_PING, queues) == "d"
    assert names.queue_of("somebody.else.task", queues) == "d"


def test_the_app_declares_every_named_task_and_routes_it_as_queue_of_says() -> None:
    settings = Settings(redis=RedisSettings(url="redis://127.0.0.1:1/0"))
    app = create_app(settings)
    app.loader.import_default_modules()
    declared = {name for name in app.tasks if name.startswith(names.PREFIX + ".")}
    constants = {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and TASK.match(value) and value[-1] != "."
    }
    assert constants <= declared
    for task in declared:
        routed = app.amqp.router.route({}, task)["queue"].name
        assert routed == names.queue_of(task, settings.queues), task


def test_no_module_spells_a_task_name_but_the_names_module() -> None:
    spelled = []
    for path in (ROOT / "workers").rglob("*.py"):
        if path == NAMES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and TASK.match(node.value)
            ):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert spelled == []
