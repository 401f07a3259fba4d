"""The account risk book in Redis: one hash per account, changed by one Lua script.

``RiskBook`` is the tick path's ``EntryGate`` (``reserve``: check and reserve at order time),
what fills call after a position changes (``set_position``: exits and reductions always pass
and release risk), and what the CLI reads and writes (levels, halt, the per-session view).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from trading.risk import PPM, RiskAnswer, RiskLevels, RiskPolicy, to_cents, to_ppm
from workers.risk.scripts import RISK
from workers.settings import RiskSettings

log = logging.getLogger(__name__)

EquitySource = Callable[[str], Decimal | None]
"""The broker's equity of an account (asked only when the book holds none yet)."""


def risk_key(account: str) -> str:
    return f"tf:acct:{{{account}}}:risk"


def _cents(value: Decimal) -> Decimal:
    return value / 100


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


@dataclass(frozen=True, slots=True)
class AccountRisk:
    """What the book holds for one account (``tradefleet risk``)."""

    account: str
    equity: Decimal | None
    sessions: dict[str, Decimal]
    heat_warn: Decimal
    heat_block: Decimal
    warned: bool
    blocked: bool
    halted: bool
    loss_day: str | None
    rejected: int
    max_daily_loss: Decimal | None
    day_pnl: tuple[str, Decimal] | None = None
    """The latest trade date with realized P&L, and that day's realized P&L."""

    @property
    def total(self) -> Decimal:
        return sum(self.sessions.values(), Decimal(0))

    @property
    def heat(self) -> Decimal:
        if self.equity is None or self.equity <= 0:
            return Decimal(0)
        return self.total / self.equity


class RiskBook:
    """The account risk hashes on the sessions' Redis."""

    def __init__(
        self, client: redis.Redis, settings: RiskSettings, equity_source: EquitySource | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self._script = client.register_script(RISK)
        self._equity_source = equity_source
        self._policy = RiskPolicy(
            atr_mult=settings.atr_mult,
            atr_periods=settings.atr_periods,
            max_position=settings.max_position,
        )

    @property
    def policy(self) -> RiskPolicy:
        return self._policy

    def _defaults(self) -> list[int]:
        s = self.settings
        return [
            to_ppm(s.heat_warn),
            to_ppm(s.heat_block),
            to_ppm(min(s.heat_hysteresis, s.heat_warn)),
        ]

    def _run(
        self,
        account: str,
        mode: str,
        session_id: str,
        amount: int,
        per_contract: Decimal | None,
        equity: Decimal | None,
        authoritative: bool,
        trade_date: str = "",
    ) -> RiskAnswer:
        args: list[str | int] = [
            mode,
            session_id,
            amount,
            "" if per_contract is None else to_cents(per_contract, up=True),
            "" if equity is None else to_cents(equity, up=False),
            "1" if authoritative else "0",
            *self._defaults(),
            trade_date,
        ]
        reply: list[Any] = self._script(keys=[risk_key(account)], args=args)
        equity_cents = int(_text(reply[3]))
        return RiskAnswer(
            accepted=int(reply[0]) == 1,
            reason=_text(reply[1]),
            total=_cents(Decimal(_text(reply[2]))),
            equity=None if equity_cents < 0 else _cents(Decimal(equity_cents)),
            warned=int(reply[4]) == 1,
            blocked=int(reply[5]) == 1,
            warn_change=int(reply[6]),
            heat_warn=Decimal(_text(reply[7])) / PPM,
            heat_block=Decimal(_text(reply[8])) / PPM,
        )

    def reserve(
        self,
        account: str,
        session_id: str,
        risk: Decimal,
        per_contract: Decimal,
        balance: Decimal | None,
        trade_date: str,
    ) -> RiskAnswer:
        """Reserve the session's whole open risk after an entry, if it fits (atomic).

        A book without equity for the account takes the session's balance, else asks the
        broker once; without any, the entry is refused (``no_equity``).
        """
        cents = to_cents(risk, up=True)
        answer = self._run(
            account, "entry", session_id, cents, per_contract, balance, False, trade_date
        )
        if answer.reason == "no_equity" and self._equity_source is not None:
            equity = self._equity_source(account)
            if equity is not None:
                answer = self._run(
                    account, "entry", session_id, cents, per_contract, equity, False, trade_date
                )
        return answer

    def set_position(
        self,
        account: str,
        session_id: str,
        quantity: int,
        per_contract: Decimal | None,
        equity: Decimal | None,
    ) -> RiskAnswer:
        """The session's risk after its position changed (always accepted: releases on exits).

        ``per_contract`` None keeps the per-contract risk of its last entry.
        """
        return self._run(account, "position", session_id, abs(quantity), per_contract, equity, True)

    def refresh(self, account: str) -> RiskAnswer:
        """Recompute the flags (after levels or equity changed)."""
        return self._run(account, "refresh", "", 0, None, None, False)

    def set_levels(self, account: str, levels: RiskLevels) -> RiskAnswer:
        mapping: dict[str, str | int] = {
            "warn_ppm": to_ppm(levels.heat_warn),
            "block_ppm": to_ppm(levels.heat_block),
            "hyst_ppm": to_ppm(levels.hysteresis),
        }
        key = risk_key(account)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            if levels.max_daily_loss is None:
                pipe.hdel(key, "max_loss")
            else:
                pipe.hset(key, "max_loss", str(to_cents(levels.max_daily_loss, up=False)))
            pipe.execute()
        return self.refresh(account)

    def fill_in_levels(self, account: str, levels: RiskLevels, halted: bool) -> RiskAnswer:
        """``set_levels`` and ``set_halted`` for the fields the risk hash lacks (after the
        sessions' Redis lost it): a value already there, written by an operator's command
        meanwhile, is kept."""
        key = risk_key(account)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "warn_ppm", str(to_ppm(levels.heat_warn)))
            pipe.hsetnx(key, "block_ppm", str(to_ppm(levels.heat_block)))
            pipe.hsetnx(key, "hyst_ppm", str(to_ppm(levels.hysteresis)))
            if levels.max_daily_loss is not None:
                pipe.hsetnx(key, "max_loss", str(to_cents(levels.max_daily_loss, up=False)))
            pipe.hsetnx(key, "halted", "1" if halted else "0")
            pipe.execute()
        return self.refresh(account)

    def set_halted(self, account: str, halted: bool) -> None:
        self.client.hset(risk_key(account), "halted", "1" if halted else "0")

    def add_realized(self, account: str, trade_date: str, realized: Decimal) -> bool:
        """Add a fill's realized P&L to the account's day; True once the daily loss limit
        is reached (entries then refused for that trade date)."""
        key = risk_key(account)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, f"pnl:{trade_date}", to_cents(realized, up=False))
            pipe.hget(key, "max_loss")
            day_cents, max_loss = pipe.execute()
        if max_loss is None or -int(day_cents) < int(_text(max_loss)):
            return False
        self.client.hset(key, "loss_day", trade_date)
        return True

    def read(self, account: str) -> AccountRisk:
        raw: Mapping[bytes, bytes] = self.client.hgetall(risk_key(account))  # type: ignore[assignment]
        return account_risk_of(account, raw, self.settings)


def account_risk_of(
    account: str, raw: Mapping[bytes, bytes] | Mapping[str, str], settings: RiskSettings
) -> AccountRisk:
    """What the account's risk hash (``raw``, as read) holds; the settings' levels where it
    has none."""
    h = {_text(k): _text(v) for k, v in raw.items()}
    sessions = {k[2:]: _cents(Decimal(v)) for k, v in h.items() if k.startswith("r:")}
    equity = h.get("equity")
    max_loss = h.get("max_loss")
    return AccountRisk(
        account=account,
        equity=None if equity is None else _cents(Decimal(equity)),
        sessions=sessions,
        heat_warn=Decimal(h.get("warn_ppm", to_ppm(settings.heat_warn))) / PPM,
        heat_block=Decimal(h.get("block_ppm", to_ppm(settings.heat_block))) / PPM,
        warned=h.get("warned") == "1",
        blocked=h.get("blocked") == "1",
        halted=h.get("halted") == "1",
        loss_day=h.get("loss_day"),
        rejected=int(h.get("rejected", "0")),
        max_daily_loss=None if max_loss is None else _cents(Decimal(max_loss)),
        day_pnl=_last_day(h),
    )


def _last_day(h: Mapping[str, str]) -> tuple[str, Decimal] | None:
    """The latest trade date with realized P&L in the book (``add_realized``), and that P&L."""
    days = [k[4:] for k in h if k.startswith("pnl:")]
    if not days:
        return None
    day = max(days)
    return day, _cents(Decimal(h[f"pnl:{day}"]))


__all__ = ["AccountRisk", "EquitySource", "RiskBook", "account_risk_of", "risk_key"]
