"""The tests' one way to start a private ``redis-server``: ``RedisServer``.

It is started the way ``tradefleet demo`` and ``tradefleet bench`` start theirs
(``workers.tools.processes.ensure_redis``: a free local port, nothing kept on disk) and stopped
with ``stop()``. The session-wide server of ``tests/conftest.py`` is one; a test that needs a
server of its own (to reconfigure, restart or kill it) starts another.
"""

from __future__ import annotations

from pathlib import Path

import redis

from workers.tools.bench.env import free_port
from workers.tools.processes import ChildProcesses, ensure_redis


class RedisServer:
    """A private redis-server process on a free port (its log in ``workdir``)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._children = ChildProcesses(log_dir=workdir)
        if not ensure_redis(self.url, self._children):
            raise RuntimeError(f"another Redis answers on port {self.port}; run again")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        self._children.stop()


def paper_url(redis_url: str) -> str:
    """The paper broker's database on the same server as ``redis_url`` (db 1)."""
    return redis_url.rsplit("/", 1)[0] + "/1"
