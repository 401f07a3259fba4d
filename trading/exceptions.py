"""Every error tradefleet raises on purpose, grouped by what happens next.

- ``RetryLater``: a transient condition; the task is retried, nothing is lost.
- ``StopSession``: this session stops trading (``trading?`` false) with an event; others go on.
- ``OperatorAction``: a person must decide; the work waits, nothing is guessed.
- ``BadInput``: input from outside (a CLI argument, a setting, a tick) is refused,
  nothing is written.
"""

from __future__ import annotations


class TradefleetError(Exception):
    """Base of every deliberate tradefleet error."""


class BadInput(TradefleetError):
    """Input from outside is refused with one clear line; nothing is written."""


class UnknownSession(BadInput):
    """The session id names no session (neither in Redis nor in SQL)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"unknown session: {session_id}")
        self.session_id = session_id


class SessionExists(BadInput):
    """A session with this id already exists; creating it again is refused."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session already exists: {session_id}")
        self.session_id = session_id


class UnknownRegisteredName(BadInput):
    """A strategy, broker or feed name that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        choices = ", ".join(sorted(known)) or "none registered"
        super().__init__(f"unknown {kind} {name!r} (known: {choices})")
        self.kind = kind
        self.name = name


class BadTick(BadInput):
    """A tick that cannot be used; it is rejected and counted, never fatal."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"bad tick ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


class RetryLater(TradefleetError):
    """A transient condition: retry the task later; nothing was changed."""


class LockBusy(RetryLater):
    """Another worker holds the session lock."""


class StaleFence(RetryLater):
    """The write was refused: a newer fencing token was issued for this session.

    The work this worker did is discarded; the state written by the newer holder stands.
    """


class ServiceUnavailable(RetryLater):
    """Redis, the database or the broker did not answer."""


class StopSession(TradefleetError):
    """This session must stop trading (``trading?`` false) and record an event."""


class StrategyError(StopSession):
    """User strategy code failed; the session stops trading, other sessions go on."""


class OperatorAction(TradefleetError):
    """A person must decide; the system waits rather than guess."""
