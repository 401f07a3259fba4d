"""``tradefleet demo --web``: the operations console beside the demo, with a one-time login.

The console is ``tradefleet web --host 127.0.0.1 --port P``, one more of the demo's children
(``ChildProcesses``: it stops with the worker and beat). Its signing key and its metrics token
are made for this run unless the environment sets them, and reach the console in its
environment only, never on its command line. The login is a user ``demo-<random>`` (operator)
with a random password, stored only as its argon2 hash (``hash_password``, as ``tradefleet web
adduser`` stores one) and removed when the demo ends, so it works only while this demo runs.
The password is shown once, on the operator's terminal (the demo's own output, never a log
file).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from rich.console import Console

from trading.exceptions import BadInput, ServiceUnavailable
from workers.cli.web_cmd import listen
from workers.db.engines import engine_for
from workers.db.user_rows import UnknownUser, add_user, delete_user
from workers.settings import Settings
from workers.tools.processes import ChildProcesses
from workers.web.passwords import hash_password

WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8000
CHILD = "web"
"""The console's name among the demo's children (its log: ``<log dir>/web.log``)."""
ANSWER_TIMEOUT_S = 30.0
"""How long the console has to answer ``GET /login`` once started."""
WATCH_INTERVAL_S = 0.5
USER_PREFIX = "demo-"


def check_port(port: int) -> None:
    """``BadInput`` (one line) unless the console could listen on ``127.0.0.1:port``: checked
    before anything starts, so a taken port costs the newcomer no replay."""
    try:
        listen(WEB_HOST, port).close()
    except BadInput as exc:
        raise BadInput(f"--web-port {port}: {exc}; give another port") from None


def _say(console: Console, line: str) -> None:
    """One line, exactly as written (no markup, highlighting or wrapping)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


class DemoConsole:
    """The demo's console and its one-time login: ``start`` (from the demo's ``on_ready``),
    ``serve_until_stopped`` after the summary, ``close`` whatever happened."""

    def __init__(
        self, settings: Settings, children: ChildProcesses, console: Console, port: int
    ) -> None:
        self.settings = settings
        self.children = children
        self.console = console
        self.port = port
        self.url = f"http://{WEB_HOST}:{port}"
        self.user = f"{USER_PREFIX}{secrets.token_hex(4)}"
        self._password = secrets.token_urlsafe(18)
        self._added = False

    def __repr__(self) -> str:
        return f"DemoConsole(url={self.url!r}, user={self.user!r})"

    def start(self) -> None:
        """Add the one-time user, start the console, wait until it answers, show the login."""
        engine = engine_for(self.settings.sqlalchemy_url)
        add_user(engine, self.user, "operator", hash_password(self._password))
        self._added = True
        env: dict[str, str] = {}
        if not self.settings.web.secret_key.get_secret_value():
            env["TRADEFLEET_WEB_SECRET_KEY"] = secrets.token_urlsafe(32)
        own_token = not self.settings.web.metrics_token.get_secret_value()
        token = secrets.token_urlsafe(24) if own_token else ""
        if own_token:
            env["TRADEFLEET_METRICS_TOKEN"] = token
        argv = [sys.executable, "-m", "workers.cli.main", "web", "--host", WEB_HOST]
        self.children.start(CHILD, [*argv, "--port", str(self.port)], env=env)
        self._wait_answers()
        _say(
            self.console,
            f"console: {self.url}  user: {self.user}  password: {self._password}  "
            "(a one-time login: it ends with this demo)",
        )
        scrape = f'curl -H "Authorization: Bearer $TRADEFLEET_METRICS_TOKEN" {self.url}/metrics'
        if own_token:
            _say(self.console, f"metrics: TRADEFLEET_METRICS_TOKEN={token}; {scrape}")
        else:
            _say(self.console, f"metrics: {scrape}  (with the TRADEFLEET_METRICS_TOKEN you set)")

    def _log(self) -> Path:
        return self.children.log_dir / f"{CHILD}.log"

    def _wait_answers(self) -> None:
        proc = self.children.children[CHILD]
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                last = self.children.log_tail(CHILD, 1).strip() or f"exit {proc.returncode}"
                raise ServiceUnavailable(
                    f"the console did not start ({last}); its log: {self._log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/login", timeout=1.0, trust_env=False).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the console did not answer on {self.url} within {ANSWER_TIMEOUT_S:.0f}s; "
                    f"its log: {self._log()}"
                )
            time.sleep(0.1)

    def serve_until_stopped(self) -> None:
        """Keep every child up (the pages stay live, actions work) until Ctrl-C or SIGTERM,
        then stop them all, a second Ctrl-C ignored meanwhile. A child that ends by itself
        ends the wait with one line (``ServiceUnavailable``)."""
        _say(self.console, f"console at {self.url} — press Ctrl-C to stop")
        try:
            while True:
                for name, proc in self.children.children.items():
                    if proc.poll() is not None:
                        raise ServiceUnavailable(
                            f"the demo's {name} stopped (exit {proc.returncode}); its log: "
                            f"{self.children.log_dir / f'{name}.log'}"
                        )
                time.sleep(WATCH_INTERVAL_S)
        except KeyboardInterrupt:
            pass
        with _signals_ignored():
            _say(self.console, "stopping the console, the worker and beat")
            self.close()
            self.children.stop()

    def close(self) -> None:
        """Remove the one-time user (its logins end at their next request); idempotent."""
        if not self._added:
            return
        with contextlib.suppress(UnknownUser):
            delete_user(engine_for(self.settings.sqlalchemy_url), self.user)
        self._added = False


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while the demo stops its children, then restored."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
