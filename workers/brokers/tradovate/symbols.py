"""tradefleet contract symbols (``ESZ13``: root, month code, two year digits) and Tradovate's
(``ESZ3``: root, month code, ONE year digit). Pure.

Tradovate's contract names: https://partner.tradovate.com/overview/core-concepts/web-sockets/market-data/market-data.md
("symbol":"ESM7"). One digit does not say the decade, so the way back needs the maturity's
year, which the broker gives in the contract's ContractMaturity.
"""

from __future__ import annotations

import re

from trading.contracts import MONTH_CODES
from trading.exceptions import BadInput

_TRADEFLEET = re.compile(r"(?P<root>[A-Z0-9]{1,4}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>[0-9]{2})")
_TRADOVATE = re.compile(r"(?P<root>[A-Z0-9]{1,4}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>[0-9]{1,2})")


def to_tradovate(symbol: str) -> str:
    """``ESZ13`` → ``ESZ3``."""
    match = _TRADEFLEET.fullmatch(symbol) if isinstance(symbol, str) else None
    if match is None:
        raise BadInput(
            f"bad contract symbol {symbol!r} (expected root + month code + YY, e.g. ESZ13)"
        )
    return f"{match['root']}{match['month']}{match['year'][-1]}"


def month_of(name: str) -> int:
    """The month (1-12) of a Tradovate contract name."""
    match = _TRADOVATE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise BadInput(f"bad Tradovate contract name {name!r} (expected e.g. ESZ3)")
    return MONTH_CODES.index(match["month"]) + 1


def from_tradovate(name: str, maturity_year: int) -> str:
    """``ESZ3`` maturing in 2013 → ``ESZ13``. The name's year digit(s) must agree with the
    maturity's year; otherwise the broker's answer is inconsistent (``BadInput``)."""
    match = _TRADOVATE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise BadInput(f"bad Tradovate contract name {name!r} (expected e.g. ESZ3)")
    digits = match["year"]
    if not 2000 <= maturity_year <= 2099 or str(maturity_year)[-len(digits) :] != digits:
        raise BadInput(f"Tradovate contract {name} does not mature in {maturity_year}")
    return f"{match['root']}{match['month']}{maturity_year % 100:02d}"
