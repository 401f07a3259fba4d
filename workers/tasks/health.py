"""``tradefleet.health.ping``: proves a worker is alive and answering on the default queue."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

from celery import Task, shared_task

from workers.dispatch import names


@shared_task(name=names.HEALTH_PING, bind=True)
def ping(self: Task[Any, Any], echo: Any = None) -> dict[str, Any]:
    """Answer with who ran the task, when (aware UTC), and ``echo`` sent back unchanged."""
    return {
        "pong": True,
        "hostname": self.request.hostname or socket.gethostname(),
        "pid": os.getpid(),
        "time": datetime.now(UTC).isoformat(),
        "echo": echo,
    }
