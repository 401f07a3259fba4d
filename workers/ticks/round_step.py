"""One session's step inside a drain round: what its begin gave, what it decided, and the
arguments of the end script that writes it (``workers.ticks.drain``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models.codec import encode_candle
from models.meta import CURSOR_FIELD
from workers.ticks.snapshots import StrategySnapshot
from workers.ticks.step import StepResult


@dataclass(frozen=True, slots=True)
class RoundStep:
    """One session's step between its begin and its end."""

    session_id: str
    end_keys: list[str]
    token: str
    fence: int
    result: StepResult
    cursor: str
    entries: int
    oldest: Mapping[bytes, bytes] | None
    """The first entry's fields, kept only for the latency probe."""
    snapshot: StrategySnapshot | None = None
    """The strategy-state snapshot to keep in SQL once the write is accepted (closed candles)."""
    cursor_before: str = ""
    """The session's cursor when the step began: a re-run of the same step starts there too."""
    times: Sequence[int] = ()
    """The stream time (ms) of each entry the step consumed, in order (the tick lag)."""
    processed_ms: int = 0
    """The wall time (epoch ms) the step processed them."""

    @property
    def decided(self) -> bool:
        """The step decided orders or events: their rows are written before its state."""
        return bool(self.result.new_orders or self.result.events)

    def end_args(self, now_ms: int, max_candles: int) -> list[str | int]:
        """ARGV of the end script: lease, fence, cursor, session, now, candles, fields."""
        candles = [encode_candle(c) for c in self.result.candles]
        args: list[str | int] = [
            self.token,
            self.fence,
            self.cursor,
            self.session_id,
            now_ms,
            max_candles,
            len(candles),
            *candles,
        ]
        for name, value in self.result.fields.items():
            if name != CURSOR_FIELD:
                args += [name, value]
        return args
