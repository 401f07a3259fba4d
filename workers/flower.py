"""Flower, the Celery monitor, always behind HTTP basic auth.

The credentials travel in the child's environment (``FLOWER_BASIC_AUTH``, which Flower
reads), never on its command line where ``ps`` would show them, and they are never logged.

Run it with ``python -m workers.flower`` (the Procfile's ``flower`` process). Flower's own
``FLOWER_PORT`` / ``FLOWER_ADDRESS`` environment variables choose where it listens.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from types import FrameType

from trading.exceptions import BadInput
from workers.settings import Settings, get_settings

logger = logging.getLogger(__name__)

CELERY_APP_MODULE = "workers.celery_app"
BASIC_AUTH_ENV = "FLOWER_BASIC_AUTH"
PASSWORD_ENV = "TRADEFLEET_FLOWER_PASSWORD"  # noqa: S105 (the variable's name, no secret)
USER_ENV = "TRADEFLEET_FLOWER_USER"
NO_PASSWORD = f"{PASSWORD_ENV} is not set: Flower never runs without authentication"


def _basic_auth(settings: Settings) -> str:
    """``user:password`` for Flower, refusing what Flower would misread."""
    user = settings.flower.user
    password = settings.flower.password.get_secret_value()
    if not password:
        raise BadInput(NO_PASSWORD)
    if not user:
        raise BadInput(f"{USER_ENV} is empty: Flower needs a user name")
    if ":" in user or "," in user:
        raise BadInput(f"{USER_ENV} must not contain ':' or ','")
    if "," in password:
        raise BadInput(f"{PASSWORD_ENV} must not contain ',' (Flower splits credentials on it)")
    return f"{user}:{password}"


def flower_command(
    settings: Settings, *, port: int | None = None, address: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run Flower against our app with basic auth.

    ``port``/``address`` go on the command line when given; otherwise Flower's defaults
    (or ``FLOWER_PORT``/``FLOWER_ADDRESS``) apply. Raises ``BadInput`` without a password.
    """
    credentials = _basic_auth(settings)
    argv = [sys.executable, "-m", "celery", "-A", CELERY_APP_MODULE, "flower"]
    if port is not None:
        argv.append(f"--port={port}")
    if address is not None:
        argv.append(f"--address={address}")
    env = {name: value for name, value in os.environ.items() if name != PASSWORD_ENV}
    env["TRADEFLEET_REDIS_URL"] = settings.redis.url
    env[BASIC_AUTH_ENV] = credentials
    return argv, env


def run_flower(settings: Settings, *, port: int | None = None, address: str | None = None) -> int:
    """Run Flower until it exits; SIGTERM/SIGINT are passed on to it. Returns its exit code."""
    argv, env = flower_command(settings, port=port, address=address)
    logger.info("starting Flower: %s", " ".join(argv))
    proc = subprocess.Popen(argv, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> int:
    """Entry point of ``python -m workers.flower``: exit 2 with one line on bad settings."""
    try:
        return run_flower(get_settings())
    except BadInput as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
