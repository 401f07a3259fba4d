"""A fresh local Tradovate server per test (its own process, on a free port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kit.tradovate_local import LocalTradovate


@pytest.fixture
def start_tv(tmp_path: Path) -> Iterator[Callable[..., LocalTradovate]]:
    started: list[LocalTradovate] = []

    def start(*args: str) -> LocalTradovate:
        server = LocalTradovate.start(tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def tv(start_tv: Callable[..., LocalTradovate]) -> LocalTradovate:
    return start_tv()
