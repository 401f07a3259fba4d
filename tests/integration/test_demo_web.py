"""The newcomer sees it: ``tradefleet demo --web`` starts the console beside the demo and shows a
one-time login on its own output; the login works over HTTP while the sessions trade, the
fleet page lists the three sessions, ``/metrics`` answers the token it shows, and everything
stays up after the summary until Ctrl-C. Then every child stops, the exit is 0, the login's
user is gone from the database, and neither the password nor the console's secrets were ever
on a command line or in a log file. Bad ``--web`` input is refused with one line."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kit.cli import REPO, cli_env, run_cli
from tests.kit.redis import paper_url
from tests.kit.wait import wait_until
from workers.db.engines import make_engine
from workers.db.user_rows import list_users
from workers.tools.bench.env import free_port

pytestmark = pytest.mark.integration

DEMO = (sys.executable, "-m", "workers.cli.main", "demo")
SINCE = "2013-12-02"
"""ES from its last day before the roll (GC's three days as always): a run of about 30 s."""
LOGIN_TIMEOUT_S = 120.0
DEMO_TIMEOUT_S = 300.0
EXIT_TIMEOUT_S = 45.0
"""The demo's children have ``STOP_TIMEOUT_S`` (15 s) each to stop before they are killed."""
LOGIN = re.compile(
    r"^console: (http://127\.0\.0\.1:\d+)  user: (demo-[0-9a-f]+)  password: (\S+)  "
)
METRICS = re.compile(r"^metrics: TRADEFLEET_METRICS_TOKEN=(\S+); curl -H ")
WAITING = re.compile(r"^console at (http://127\.0\.0\.1:\d+) — press Ctrl-C to stop$")
SESSION = re.compile(r"demo-([0-9a-f]{6})-(es-sma|es-breakout|gc-breakout)")
SECRETS = ("TRADEFLEET_WEB_SECRET_KEY", "TRADEFLEET_METRICS_TOKEN")


class Lines:
    """Every line a pipe gives, read by a thread (the pipe never fills); ``wait_for`` polls them
    with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._done = False
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first line seen so far or within ``timeout`` matching ``pattern``."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for line in self.seen[checked:]:
                if found := pattern.search(line):
                    return found
            checked = len(self.seen)
            if self._done or time.monotonic() > deadline:
                ended = "the output ended" if self._done else "still running"
                raise AssertionError(
                    f"no line matching {pattern.pattern!r} within {timeout:.0f}s ({ended}); "
                    "stdout so far:\n" + "\n".join(self.seen[-40:])
                )
            try:
                got = self._queue.get(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if got is None:
                self._done = True
            else:
                self.seen.append(got)


def _ours(data_dir: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Every live process started with ``data_dir`` as its data dir: pid, argv, environment."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        env = dict(
            item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
        )
        if env.get("TRADEFLEET_DATA_DIR") == str(data_dir):
            yield int(entry.name), argv, env


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/login", timeout=2, trust_env=False)
    except httpx.HTTPError:
        return False
    return True


def _log_in(client: httpx.Client, user: str, password: str) -> None:
    """The real login form: its token and nonce cookie, then the POST."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    answer = client.post(
        "/login",
        data={"username": user, "password": password, "login_token": token[1], "next": "/"},
    )
    assert answer.status_code == 303, answer.text


def _stop(proc: subprocess.Popen[str], data_dir: Path) -> None:
    """A test that failed midway: SIGTERM (the demo stops its children), then SIGKILL to
    anything of this demo still running."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid, _, _ in _ours(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(DEMO_TIMEOUT_S + 120)
def test_demo_web_shows_the_fleet_to_a_one_time_login_until_ctrl_c(
    redis_url: str, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = cli_env(redis_url, database_url, paper_url(redis_url), data_dir=str(tmp_path))
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [*DEMO, "--web", "--web-port", str(port), "--since", SINCE],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "demo.err").open("w"),
        text=True,
    )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        login = lines.wait_for(LOGIN, LOGIN_TIMEOUT_S)
        url, user, password = login[1], login[2], login[3]
        assert url == f"http://127.0.0.1:{port}"
        token = lines.wait_for(METRICS, 5)[1]

        # the console is the demo's child: its secrets in its environment, none on its command line
        consoles = [(argv, e) for _, argv, e in _ours(tmp_path) if "workers.cli.main web" in argv]
        assert len(consoles) == 1, consoles
        console_env = consoles[0][1]
        secrets = {name: console_env[name] for name in SECRETS}
        assert secrets["TRADEFLEET_METRICS_TOKEN"] == token
        assert len(secrets["TRADEFLEET_WEB_SECRET_KEY"]) >= 32
        for _, argv, _ in _ours(tmp_path):
            for secret in (password, *secrets.values()):
                assert secret not in argv, argv

        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            _log_in(client, user, password)
            fleet = client.get("/")
            assert fleet.status_code == 200, fleet.text
            found = set(SESSION.findall(fleet.text))
            assert {label for _, label in found} == {"es-sma", "es-breakout", "gc-breakout"}
            assert len({run for run, _ in found}) == 1, found
            scrape = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert scrape.status_code == 200
            by_status = {
                sample.labels["status"]: sample.value
                for family in text_string_to_metric_families(scrape.text)
                if family.name == "tradefleet_sessions"
                for sample in family.samples
            }
            assert sum(v for s, v in by_status.items() if s != "stopped") == 3, by_status

            # after the summary everything stays up: the same login still sees the fleet
            assert lines.wait_for(WAITING, DEMO_TIMEOUT_S)[1] == url
            assert "every session's position agrees with the broker" in lines.seen
            assert client.get("/").status_code == 200
            assert proc.poll() is None
        waited = time.monotonic()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=EXIT_TIMEOUT_S) == 0, (tmp_path / "demo.err").read_text()
        stopped = time.monotonic() - waited
    finally:
        _stop(proc, tmp_path)
    print(
        f"demo --web --since {SINCE}: {waited - started:.0f}s to the wait, {stopped:.1f}s to stop"
    )

    assert not _answers(url)
    assert wait_until(lambda: not list(_ours(tmp_path)), timeout=10, what="no child left")
    engine = make_engine(database_url, pooled=False)
    try:
        assert [row.name for row in list_users(engine)] == []  # the login was one-time
    finally:
        engine.dispose()
    logs = [path for path in (tmp_path / "demo-logs").rglob("*") if path.is_file()]
    assert any(path.name == "web.log" for path in logs), logs
    for path in logs:
        text = path.read_bytes()
        for secret in (password, *secrets.values()):
            assert secret.encode() not in text, path


def test_demo_web_refuses_a_bad_port_in_one_line(redis_url: str, tmp_path: Path) -> None:
    env = cli_env(
        redis_url,
        f"sqlite:///{tmp_path / 'demo.db'}",
        paper_url(redis_url),
        data_dir=str(tmp_path),
    )
    run_cli(env, "demo", "--web", "--web-port", "0").refused("--web-port")
    run_cli(env, "demo", "--web", "--web-port", "65536").refused("--web-port")
    run_cli(env, "demo", "--web-port", "8123").refused("--web-port", "--web")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run_cli(env, "demo", "--web", "--web-port", str(port)).refused(
            f"--web-port {port}", "in use", "another port"
        )
    # refused before anything started or was written
    assert not (tmp_path / "demo.db").exists()
    assert not (tmp_path / "demo-logs").exists()
