"""Who acts when the ``tradefleet`` command acts: ``cli:<OS user>``, named in the
``operator`` events of its actions (``workers.operations.audit``)."""

from __future__ import annotations

import getpass
import os


def cli_actor() -> str:
    """``cli:`` and the OS user running the command (its uid when it has no name)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return f"cli:uid-{os.getuid()}"
