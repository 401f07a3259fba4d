"""Lua scripts in pipelines in one round trip.

redis-py's pipeline asks Redis ``SCRIPT EXISTS`` before every execution that holds a script:
a second round trip for each pipeline. Here scripts are queued as plain ``EVALSHA``; only
when Redis answers NOSCRIPT (it restarted, or its script cache was flushed) are the scripts
loaded and the refused commands sent again (a refused command did not run, so this is safe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


def queue_script(
    pipe: redis.client.Pipeline, script: Script, keys: Sequence[Any], args: Sequence[Any]
) -> None:
    """Queue one call of ``script`` on ``pipe`` (no ``SCRIPT EXISTS`` check)."""
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


def execute(pipe: redis.client.Pipeline, scripts: Sequence[Script]) -> list[Any]:
    """Execute ``pipe`` (errors come back in place); reload ``scripts`` on NOSCRIPT."""
    if not len(pipe):
        return []
    commands = [(args, options) for args, options in pipe.command_stack]
    replies: list[Any] = pipe.execute(raise_on_error=False)
    refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if not refused:
        return replies
    client = scripts[0].registered_client
    for script in scripts:
        client.script_load(script.script)
    with client.pipeline(transaction=False) as again:
        for i in refused:
            args, options = commands[i]
            again.execute_command(*args, **options)  # type: ignore[no-untyped-call]
        for i, reply in zip(refused, again.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    return replies
