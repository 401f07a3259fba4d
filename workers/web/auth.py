"""Who is asking: users with a role (viewer, operator), the login, the signed session cookie,
CSRF tokens and the login rate limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, Request

Role = Literal["viewer", "operator"]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


def current_user(request: Request) -> User:
    """The logged-in user of this request; without a valid session cookie, a page request is
    sent to ``/login`` and an API request answered 401."""
    raise NotImplementedError  # the login lands with the auth module


def require_operator(user: User = Depends(current_user)) -> User:  # noqa: B008
    """``current_user``, refused with 403 unless an operator."""
    raise NotImplementedError  # the login lands with the auth module


def csrf_token(request: Request) -> str:
    """The CSRF token of this request's login, for the hidden ``csrf_token`` field of every
    action form (checked on every POST)."""
    raise NotImplementedError  # the login lands with the auth module
