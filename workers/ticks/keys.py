"""Key names of the tick path (DESIGN.md, "The tick path").

- ``md:{<instrument>}:ticks`` — one capped stream per instrument; entry fields ``t`` (data
  time, epoch ms), ``p`` (price), ``s`` (size), optional ``b``/``a`` (bid/ask); entry ids are
  ``<ms>-<seq>`` with ms = max(data time, previous id), so ids stay increasing.
- ``md:{<instrument>}:subs`` — the ids of the sessions fed by that instrument.
- ``md:{<instrument>}:source`` — hash {``source``, ``next``}: the feed that last published to
  the stream and the next number of its own sequence of that instrument's entries (entries it
  sends again below ``next`` are duplicates, refused: ``workers.ticks.scripts.PUBLISH``). It
  goes with the stream when Redis restarts empty: a guarded feed's next batch finding it gone
  is how the feed notices the loss (``workers.ticks.publisher.StreamLost``).
- ``tf:ready`` — sorted set of sessions with ticks to process; score = epoch ms from which the
  session may be claimed (a claim pushes it into the future: a lease that a dead worker loses).
- ``tf:drainers`` — how many drain tasks are queued or running.
- ``tf:wake`` — a list of wake tokens for idle drainers, which block on it (``BLPOP``) instead of
  polling; ``tf:sleepers`` — the drainers waiting on it (score: the epoch ms their wait ends);
  ``tf:awake`` — the drainers in a round (score: until when that counts, renewed by each claim).
  A publish that made sessions ready wakes one sleeper if no drainer is awake (an awake one
  claims them at its round's end: rounds of several sessions); a claim that left due sessions
  to the others wakes sleepers for them; the sweep wakes one if sessions are due.
- ``tf:backlog`` — set for a moment by a drainer whose round read many ticks per session (a
  backlog): while it exists, claims share the due sessions among the drainers.
"""

from __future__ import annotations

import re

from trading.exceptions import BadInput

READY_KEY = "tf:ready"
DRAINERS_KEY = "tf:drainers"
BACKLOG_KEY = "tf:backlog"
WAKE_KEY = "tf:wake"
SLEEPERS_KEY = "tf:sleepers"
AWAKE_KEY = "tf:awake"
_INSTRUMENT = re.compile(r"[A-Z0-9]{1,16}")


def check_instrument(instrument: str) -> str:
    if _INSTRUMENT.fullmatch(instrument) is None:
        raise BadInput(f"bad instrument {instrument!r}: expected a contract symbol like ESZ13")
    return instrument


def stream_key(instrument: str) -> str:
    return f"md:{{{check_instrument(instrument)}}}:ticks"


def subscribers_key(instrument: str) -> str:
    return f"md:{{{check_instrument(instrument)}}}:subs"


def source_key(instrument: str) -> str:
    return f"md:{{{check_instrument(instrument)}}}:source"
