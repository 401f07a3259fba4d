"""The console as a newcomer meets it: ``tradefleet web`` in its own process (``Console``), its
users added with the real ``tradefleet web adduser``, and Debian's Chromium driven headless by
Playwright (``chromium``), each page's screenshot kept as a test artifact.

Chromium comes from the distribution (``make test`` installs the ``chromium`` package): a
browser downloaded by a Python package does not run on these machines.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from tests.kit.cli import REPO, run_cli
from tests.kit.wait import wait_until
from workers.tools.bench.env import free_port

SECRET_KEY = "test-console-secret-key-0123456789abcdef"
METRICS_TOKEN = "test-metrics-token-0123456789"
ARTIFACTS = Path(os.environ.get("TRADEFLEET_TEST_ARTIFACTS", REPO / "var" / "test-artifacts"))
WEB_ARGV = (sys.executable, "-m", "workers.cli.main", "web")
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def console_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` (a ``tradefleet`` command's) plus what the console needs: its key, the metrics
    token."""
    return {
        **env,
        "TRADEFLEET_WEB_SECRET_KEY": SECRET_KEY,
        "TRADEFLEET_METRICS_TOKEN": METRICS_TOKEN,
    }


def add_user(env: dict[str, str], name: str, role: str, password: str) -> None:
    """``tradefleet web adduser NAME --role ROLE``, the password on standard input."""
    run_cli(env, "web", "adduser", name, "--role", role, stdin=password + "\n").ok()


class Console:
    """``tradefleet web`` on a free port of 127.0.0.1, stopped (SIGTERM) on exit."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = console_env(env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Console:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*WEB_ARGV, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, timeout=30, interval=0.1, what=f"the console on {self.url}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the console exited: {self.log()}")
        try:
            return httpx.get(self.url + "/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metrics(self, token: str | None = METRICS_TOKEN) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.get(self.url + "/metrics", headers=headers, timeout=10)


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("Debian's chromium is not installed: `make chromium` (as root)")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium from the distribution, driven by Playwright."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Page, console: Console, name: str, password: str) -> None:
    """The login form, as a person fills it."""
    page.goto(console.url + "/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def screenshot(page: Page, test: str, name: str) -> Path:
    """Keep the page as ``<artifacts>/<test>/<name>.png``; returns the path."""
    path = ARTIFACTS / test / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
