"""Commands sent in one round trip, scripts among them, with little client-side cost.

redis-py's pipeline asks Redis ``SCRIPT EXISTS`` before every execution that holds a script
(a second round trip), and spends more time per command than Redis spends running a short
script. A ``Batch`` packs its commands as they are (with hiredis), sends them in one write
and reads the replies in order; an error reply comes back in its place as the exception. Only
when Redis answers NOSCRIPT (it restarted, or its script cache was flushed) are the scripts
loaded and the refused commands sent again (a refused command did not run, so this is safe). A lost
connection is retried by the client's own retry policy, as a pipeline is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

Command = tuple[Any, ...]


class Batch:
    """Commands to send together; ``execute`` answers their replies in order."""

    __slots__ = ("_client", "commands", "resent")

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self.commands: list[Command] = []
        self.resent: list[int] = []
        """The commands ``execute`` sent a second time, after the others (NOSCRIPT)."""

    def __len__(self) -> int:
        return len(self.commands)

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """One call of ``script`` (as ``EVALSHA``: no ``SCRIPT EXISTS`` check)."""
        self.commands.append(("EVALSHA", script.sha, len(keys), *keys, *args))

    def command(self, *args: Any) -> None:
        self.commands.append(args)

    def execute(self, scripts: Sequence[Script] = ()) -> list[Any]:
        """The replies (errors in place, not raised); ``scripts`` reloaded on NOSCRIPT."""
        if not self.commands:
            return []
        replies = self._round_trip(self.commands)
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if not refused:
            return replies
        for script in scripts:
            self._client.script_load(script.script)
        again = self._round_trip([self.commands[i] for i in refused])
        for i, reply in zip(refused, again, strict=True):
            replies[i] = reply
        self.resent = refused
        return replies

    def execute_checked(self) -> list[Any]:
        """The replies, the first error among them raised (commands without scripts)."""
        replies = self.execute()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _round_trip(self, commands: Sequence[Command]) -> list[Any]:
        pool = self._client.connection_pool
        conn: Any = pool.get_connection()
        try:
            replies: list[Any] = conn.retry.call_with_retry(
                lambda: _send_and_read(conn, commands), lambda _error: conn.disconnect()
            )
        finally:
            pool.release(conn)
        return replies


def _send_and_read(conn: Any, commands: Sequence[Command]) -> list[Any]:
    conn.send_packed_command([packed(commands)])
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(conn.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


def packed(commands: Sequence[Command]) -> bytes:
    """The commands in Redis's protocol, as one buffer (one write to the socket).

    Each command is packed by hiredis as it is: its first element is the command's name (no
    "SCRIPT LOAD" split at the space, as redis-py does), and every element is bytes, str, int
    or float (anything else raises ``redis.DataError``).
    """
    try:
        return b"".join([hiredis.pack_command(command) for command in commands])
    except TypeError as exc:
        raise redis.DataError(str(exc)) from exc
