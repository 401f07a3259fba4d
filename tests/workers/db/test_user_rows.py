"""Console users in SQL, on SQLite and PostgreSQL: added once, updated only when asked, listed,
deleted; names and roles checked before anything is written."""

from __future__ import annotations

import pytest

from trading.exceptions import BadInput
from workers.db.engines import make_engine, upgrade
from workers.db.user_rows import (
    UnknownUser,
    add_user,
    count_users,
    delete_user,
    get_user,
    list_users,
    update_user,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    upgrade(url)
    return url


def test_users_are_added_once_updated_on_request_listed_and_deleted(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert count_users(engine) == 0
        add_user(engine, "alice", "operator", "hash-a")
        add_user(engine, "bob.v@desk", "viewer", "hash-b")
        with pytest.raises(BadInput, match=r"already exists.*--update"):
            add_user(engine, "alice", "viewer", "other")
        found = get_user(engine, "alice")
        assert found is not None
        assert (found.role, found.password_hash) == ("operator", "hash-a")
        assert found.created_at.tzinfo is not None

        update_user(engine, "alice", "viewer", "hash-a2")
        found = get_user(engine, "alice")
        assert found is not None and (found.role, found.password_hash) == ("viewer", "hash-a2")
        with pytest.raises(UnknownUser, match="unknown console user: carol"):
            update_user(engine, "carol", "viewer", "x")

        assert [(u.name, u.role) for u in list_users(engine)] == [
            ("alice", "viewer"),
            ("bob.v@desk", "viewer"),
        ]
        delete_user(engine, "alice")
        assert get_user(engine, "alice") is None
        with pytest.raises(UnknownUser):
            delete_user(engine, "alice")
        assert count_users(engine) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("name", "role", "message"),
    [
        ("", "viewer", "bad user name"),
        ("-x", "viewer", "bad user name"),
        ("a b", "viewer", "bad user name"),
        ("x" * 65, "viewer", "bad user name"),
        ("ok", "admin", "unknown role 'admin'"),
    ],
)
def test_bad_names_and_roles_are_refused_and_nothing_is_written(
    db_url: str, name: str, role: str, message: str
) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(BadInput, match=message):
            add_user(engine, name, role, "hash")
        assert count_users(engine) == 0
        assert get_user(engine, name) is None
    finally:
        engine.dispose()
