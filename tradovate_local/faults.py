"""The faults a test arms through ``POST /_local/faults`` (TRADOVATE-SPEC.md, "Faults").

Each one-shot fault is used up by the code that meets it; ``DELETE /_local/faults`` clears
all. ``drop_sockets`` and ``expire_tokens`` act at once when posted and are not kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KNOWN = (
    "partial_fills",
    "duplicate_props",
    "reorder_props",
    "drop_sockets",
    "expire_tokens",
    "p_ticket",
    "rate_limit",
    "reject_next_order",
    "maintenance",
    "stop_leg_never_worked",
)


class BadFault(ValueError):
    pass


@dataclass
class Faults:
    partial_fills: int = 0
    duplicate_props: bool = False
    reorder_props: bool = False
    p_ticket_count: int = 0
    p_ticket_seconds: int = 0
    p_ticket_captcha: bool = False
    rate_limit_count: int = 0
    rate_limit_retry_after: int | None = None
    reject_reason: str | None = None
    reject_text: str = ""
    maintenance: bool = False
    stop_leg_never_worked: bool = False

    def arm(self, body: dict[str, Any]) -> list[str]:
        """Apply ``body``; the names of the faults that act at once (drop_sockets,
        expire_tokens) and are true. Refuses unknown names or bad values (``BadFault``)."""
        unknown = sorted(set(body) - set(KNOWN))
        if unknown:
            raise BadFault(f"unknown faults {unknown}; known: {list(KNOWN)}")
        now: list[str] = []
        for name, value in body.items():
            if name == "partial_fills":
                self.partial_fills = _int(name, value, minimum=0)
            elif name in (
                "duplicate_props",
                "reorder_props",
                "maintenance",
                "stop_leg_never_worked",
            ):
                setattr(self, name, _bool(name, value))
            elif name in ("drop_sockets", "expire_tokens"):
                if _bool(name, value):
                    now.append(name)
            elif name == "p_ticket":
                spec = _dict(name, value)
                self.p_ticket_count = _int("p_ticket.count", spec.get("count", 1), minimum=0)
                self.p_ticket_seconds = _int("p_ticket.seconds", spec.get("seconds", 1), minimum=0)
                self.p_ticket_captcha = _bool("p_ticket.captcha", spec.get("captcha", False))
            elif name == "rate_limit":
                spec = _dict(name, value)
                self.rate_limit_count = _int("rate_limit.count", spec.get("count", 1), minimum=0)
                retry = spec.get("retry_after")
                self.rate_limit_retry_after = (
                    None if retry is None else _int("rate_limit.retry_after", retry, minimum=0)
                )
            elif name == "reject_next_order":
                spec = _dict(name, value)
                self.reject_reason = str(spec.get("reason", "UnknownReason"))
                self.reject_text = str(spec.get("text", ""))
        return now

    def take_partial_fills(self) -> int | None:
        parts, self.partial_fills = self.partial_fills, 0
        return parts or None

    def take_reject(self) -> tuple[str, str] | None:
        if self.reject_reason is None:
            return None
        reason, text = self.reject_reason, self.reject_text
        self.reject_reason, self.reject_text = None, ""
        return reason, text

    def take_rate_limit(self) -> tuple[bool, int | None]:
        if self.rate_limit_count <= 0:
            return False, None
        self.rate_limit_count -= 1
        return True, self.rate_limit_retry_after

    def take_p_ticket(self) -> tuple[int, bool] | None:
        if self.p_ticket_count <= 0:
            return None
        self.p_ticket_count -= 1
        return self.p_ticket_seconds, self.p_ticket_captcha

    def take_stop_leg_never_worked(self) -> bool:
        value, self.stop_leg_never_worked = self.stop_leg_never_worked, False
        return value

    def view(self) -> dict[str, Any]:
        return {
            "partial_fills": self.partial_fills,
            "duplicate_props": self.duplicate_props,
            "reorder_props": self.reorder_props,
            "p_ticket": {
                "count": self.p_ticket_count,
                "seconds": self.p_ticket_seconds,
                "captcha": self.p_ticket_captcha,
            },
            "rate_limit": {
                "count": self.rate_limit_count,
                "retry_after": self.rate_limit_retry_after,
            },
            "reject_next_order": None
            if self.reject_reason is None
            else {"reason": self.reject_reason, "text": self.reject_text},
            "maintenance": self.maintenance,
            "stop_leg_never_worked": self.stop_leg_never_worked,
        }


def _int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadFault(f"{name} must be an integer >= {minimum}")
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise BadFault(f"{name} must be true or false")
    return value


def _dict(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadFault(f"{name} must be an object")
    return value
