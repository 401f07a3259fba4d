"""The session's working copies of its account's heat, from the risk gate's answer.

The tick path's risk check of a signal's entry is pure (``trading.risk.check_entry``, called
by ``trading.decision`` through the ``EntryGate`` that ``workers.risk.book.RiskBook`` is); the
step writes its answer into the session's fields with ``heat_fields``.
"""

from __future__ import annotations

from decimal import Decimal

from models.codec import encode_field
from trading.risk import RiskAnswer


def heat_fields(answer: RiskAnswer) -> dict[str, str]:
    """The session's working copies of its account's heat and flags."""
    return {
        "portfolio_heat": encode_field("portfolio_heat", answer.heat.quantize(Decimal("0.000001"))),
        "portfolio_heat_warned": encode_field("portfolio_heat_warned", answer.warned),
        "portfolio_heat_blocked": encode_field("portfolio_heat_blocked", answer.blocked),
    }


__all__ = ["heat_fields"]
