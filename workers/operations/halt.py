"""The kill switch: ``halt`` stops entries on accounts, cancels their open entry orders at the
broker and, with ``flatten``, sends each session's exit to flat; ``resume`` lifts it;
``wind_down`` is the whole fleet halted and flattened.

Halting is the account's ``halted`` flag (SQL row and risk hash): the entry check refuses every
entry while it is set; exits still pass. A flatten exit is decided and sent as
``workers.operations.flatten`` does for one session, except for a session in a roll: the
roll's own close and open move its position, and an exit beside them could leave it the other
way round, so it is left to the operator (resume or abort the roll, then flatten) and the
report and its events say so. Each call leaves ``operator`` events
naming who acted: one for the call, one per session it touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.operations.audit import operator_event
from workers.operations.flatten import cancel_entries, decide_exit, roll_in_progress
from workers.orders.send import send_order
from workers.risk.accounts import active_sessions, known_accounts, set_halted
from workers.risk.book import RiskBook
from workers.runtime import Runtime


@dataclass(frozen=True, slots=True)
class HaltReport:
    accounts: list[str]
    cancelled: list[str]
    exits: list[str]
    in_roll: list[str] = field(default_factory=list)
    """Sessions not flattened because they are in a roll."""

    def line(self, what: str = "halted") -> str:
        said = (
            f"{what} {', '.join(self.accounts) or 'no account'}: "
            f"{len(self.cancelled)} entry orders cancelled, {len(self.exits)} exits sent"
        )
        if self.in_roll:
            said += (
                f"; {len(self.in_roll)} session(s) in a roll NOT flattened "
                "(resume or abort the roll, then flatten)"
            )
        return said


def halt(rt: Runtime, account: str | None, flatten: bool, actor: str) -> HaltReport:
    """Halt ``account`` (None: every known account), cancel its sessions' open entries and,
    with ``flatten``, send each session's exit to flat."""
    book = RiskBook(rt.redis, rt.settings.risk)
    accounts = [account] if account is not None else known_accounts(rt.engine)
    cancelled: list[str] = []
    exits: list[str] = []
    in_roll: list[str] = []
    what = "halted" + (" and flattened" if flatten else "")
    for name in accounts:
        set_halted(rt.engine, book, name, True)
    for row in active_sessions(rt.engine, account):
        cancelled_here = cancel_entries(rt, row)
        cancelled += cancelled_here
        rolling = roll_in_progress(rt, row) if flatten else None
        if rolling is not None:
            in_roll.append(row.id)
        exit_coid = decide_exit(rt, row) if flatten and rolling is None else None
        if exit_coid is not None:
            send_order(rt, row.id, exit_coid)
            exits.append(exit_coid)
        operator_event(
            rt.engine,
            row.id,
            actor,
            what,
            {
                "account": row.account,
                "cancelled": len(cancelled_here),
                "flatten": flatten,
                "exit": exit_coid,
                "not_flattened": rolling,
            },
        )
    report = HaltReport(accounts, cancelled, exits, in_roll)
    operator_event(
        rt.engine,
        None,
        actor,
        report.line(what),
        {
            "accounts": accounts,
            "cancelled": len(cancelled),
            "exits": len(exits),
            "in_roll": in_roll,
            "flatten": flatten,
        },
    )
    return report


def resume(rt: Runtime, account: str | None, actor: str) -> list[str]:
    """Lift the halt of ``account`` (None: every known account)."""
    book = RiskBook(rt.redis, rt.settings.risk)
    accounts = [account] if account is not None else known_accounts(rt.engine)
    for name in accounts:
        set_halted(rt.engine, book, name, False)
    operator_event(
        rt.engine,
        None,
        actor,
        f"resumed {', '.join(accounts) or 'no account'}",
        {"accounts": accounts},
    )
    return accounts


def wind_down(rt: Runtime, actor: str) -> HaltReport:
    """Halt entries everywhere, then take every active session to flat."""
    return halt(rt, None, True, actor)


__all__ = ["HaltReport", "halt", "resume", "wind_down"]
