"""The console's users in SQL (``models.tables.UserRow``): added, updated, found, listed,
deleted. Only a password's hash is ever stored; hashing is the caller's
(``workers.web.passwords``).

Every function takes an ``Engine`` and runs in a transaction of its own; rows come back
detached and fully loaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.tables import USER_ROLES, UserRole, UserRow
from trading.exceptions import BadInput

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
"""A user name: 1 to 64 letters, digits and ``_ . @ -``, starting with a letter or digit."""


class UnknownUser(BadInput):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown console user: {name}")
        self.name = name


def check_name(name: str) -> str:
    """``name`` if it is a valid user name, else ``BadInput`` saying what one is."""
    if not NAME_PATTERN.fullmatch(name):
        raise BadInput(
            f"bad user name {name[:80]!r}: 1 to 64 letters, digits or _ . @ -, "
            "starting with a letter or digit"
        )
    return name


def check_role(role: str) -> UserRole:
    if role not in USER_ROLES:
        raise BadInput(f"unknown role {role!r} (known: {', '.join(USER_ROLES)})")
    return role  # type: ignore[return-value]


def add_user(engine: Engine, name: str, role: str, password_hash: str) -> UserRow:
    """A new user; a name already taken is refused (the primary key decides under races)."""
    row = UserRow(
        name=check_name(name),
        role=check_role(role),
        password_hash=password_hash,
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )
    with Session(engine, expire_on_commit=False) as db:
        db.add(row)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            raise BadInput(
                f"console user {name} already exists (give --update to change its password "
                "and role)"
            ) from None
    return row


def update_user(engine: Engine, name: str, role: str, password_hash: str) -> UserRow:
    """Set an existing user's role and password hash; ``UnknownUser`` if there is none."""
    checked = check_role(role)
    with Session(engine, expire_on_commit=False) as db:
        row = db.get(UserRow, check_name(name))
        if row is None:
            raise UnknownUser(name)
        row.role = checked
        row.password_hash = password_hash
        row.updated_at = datetime.now(UTC)
        db.commit()
        return row


def get_user(engine: Engine, name: str) -> UserRow | None:
    """The user named ``name``, or ``None`` (also for a name no user could have)."""
    if not NAME_PATTERN.fullmatch(name):
        return None
    with Session(engine, expire_on_commit=False) as db:
        return db.get(UserRow, name)


def list_users(engine: Engine) -> Sequence[UserRow]:
    """Every user, by name."""
    with Session(engine, expire_on_commit=False) as db:
        return db.scalars(select(UserRow).order_by(UserRow.name)).all()


def count_users(engine: Engine) -> int:
    with Session(engine) as db:
        return int(db.scalar(select(func.count()).select_from(UserRow)) or 0)


def delete_user(engine: Engine, name: str) -> None:
    """Remove the user (its logins end at their next request); ``UnknownUser`` if none."""
    with Session(engine) as db:
        row = db.get(UserRow, check_name(name))
        if row is None:
            raise UnknownUser(name)
        db.delete(row)
        db.commit()
