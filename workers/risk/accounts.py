"""Per-account settings: kept in SQL (``accounts``), pushed to the account's risk hash.

``set_account`` upserts the row and writes the levels into Redis in the same call; ``halt`` /
``resume`` flip the halted flag in both; ``restore_account`` puts them back into a risk hash the
sessions' Redis lost (recovery). ``account_report`` is what ``tradefleet risk`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.codec import decode_field, state_key
from models.tables import AccountRow, TradingSessionRow
from trading.exceptions import BadInput
from trading.risk import RiskLevels
from workers.risk.book import AccountRisk, RiskBook
from workers.settings import RiskSettings


@dataclass(frozen=True, slots=True)
class AccountChange:
    """What ``tradefleet account set`` changes (None: keep the current value)."""

    heat_warn: Decimal | None = None
    heat_block: Decimal | None = None
    max_daily_loss: Decimal | None = None
    clear_daily_loss: bool = False


def levels_of(row: AccountRow | None, settings: RiskSettings) -> RiskLevels:
    hysteresis = settings.heat_hysteresis
    if row is None:
        warn, block, loss = settings.heat_warn, settings.heat_block, None
    else:
        warn, block, loss = row.heat_warn, row.heat_block, row.max_daily_loss
    return RiskLevels(warn, block, min(hysteresis, warn), loss)


def set_account(engine: Engine, book: RiskBook, account: str, change: AccountChange) -> RiskLevels:
    """Upsert the account's row, then its levels in the risk hash; ``BadInput`` if bad."""
    if not account.strip():
        raise BadInput("the account must not be empty")
    with Session(engine, expire_on_commit=False) as db:
        row = db.get(AccountRow, account)
        current = levels_of(row, book.settings)
        loss = None if change.clear_daily_loss else current.max_daily_loss
        if change.max_daily_loss is not None:
            loss = change.max_daily_loss
        warn = change.heat_warn if change.heat_warn is not None else current.heat_warn
        block = change.heat_block if change.heat_block is not None else current.heat_block
        try:
            hysteresis = min(book.settings.heat_hysteresis, warn)
            levels = RiskLevels(warn, block, hysteresis, loss)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        if row is None:
            row = AccountRow(account=account, halted=False)
            db.add(row)
        row.heat_warn = levels.heat_warn
        row.heat_block = levels.heat_block
        row.max_daily_loss = levels.max_daily_loss
        row.updated_at = datetime.now(UTC)
        db.commit()
    book.set_levels(account, levels)
    return levels


def set_halted(engine: Engine, book: RiskBook, account: str, halted: bool) -> None:
    with Session(engine) as db:
        row = db.get(AccountRow, account)
        if row is None:
            levels = levels_of(None, book.settings)
            row = AccountRow(
                account=account,
                heat_warn=levels.heat_warn,
                heat_block=levels.heat_block,
                max_daily_loss=None,
            )
            db.add(row)
        row.halted = halted
        row.updated_at = datetime.now(UTC)
        db.commit()
    book.set_halted(account, halted)


def restore_account(engine: Engine, book: RiskBook, account: str) -> bool:
    """The account's levels and halted flag from its SQL row into a risk hash that lost them
    (the sessions' Redis was lost): without this a halted account would trade again and its
    levels fall back to the defaults. False when the account has no row (defaults apply)."""
    with Session(engine) as db:
        row = db.get(AccountRow, account)
        if row is None:
            return False
        levels, halted = levels_of(row, book.settings), row.halted
    book.fill_in_levels(account, levels, halted)
    return True


def known_accounts(engine: Engine) -> list[str]:
    """Every account with a session or its own settings, sorted."""
    with Session(engine) as db:
        names = set(db.scalars(select(TradingSessionRow.account)).all())
        names |= set(db.scalars(select(AccountRow.account)).all())
    return sorted(names)


def active_sessions(engine: Engine, account: str | None = None) -> list[TradingSessionRow]:
    query = select(TradingSessionRow).where(TradingSessionRow.status == "active")
    if account is not None:
        query = query.where(TradingSessionRow.account == account)
    with Session(engine, expire_on_commit=False) as db:
        return list(db.scalars(query.order_by(TradingSessionRow.name)).all())


@dataclass(frozen=True, slots=True)
class SessionRisk:
    session_id: str
    name: str
    position: int
    risk: Decimal
    heat: Decimal


def account_report(
    engine: Engine, book: RiskBook, account: str
) -> tuple[AccountRisk, list[SessionRisk]]:
    """The account's book and each of its sessions' contribution."""
    book.refresh(account)
    risk = book.read(account)
    rows = []
    for row in active_sessions(engine, account):
        raw = book.client.hget(state_key(row.id), "open_position")
        position = decode_field("open_position", raw.decode()) if isinstance(raw, bytes) else None
        held = 0 if position is None else position.quantity
        amount = risk.sessions.get(row.id, Decimal(0))
        share = amount / risk.equity if risk.equity else Decimal(0)
        rows.append(SessionRisk(row.id, row.name, held, amount, share))
    return risk, rows


__all__ = [
    "AccountChange",
    "SessionRisk",
    "account_report",
    "active_sessions",
    "known_accounts",
    "levels_of",
    "restore_account",
    "set_account",
    "set_halted",
]
