"""The tick path's own counters, kept in the session's state hash beside the struct."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trading.stops import StopOut, taken_as_closed


@dataclass(frozen=True, slots=True)
class TickProgress:
    """The tick path's own counters, kept in the state hash beside the struct (``_progress``)."""

    last_ms: int | None = None
    signal_seq: int = 0
    candles_closed: int = 0
    ticks_processed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    stops_out: tuple[StopOut, ...] = ()
    """Protective stops seen touched whose fills are not applied yet, the positions they
    protect taken as closed (``trading.stops``); written only when there are."""

    @property
    def stop_out(self) -> int:
        return taken_as_closed(self.stops_out)

    def advanced(self, last_ms: int | None, ticks: int, rejected: dict[str, int]) -> TickProgress:
        """These counters after a step that processed ``ticks`` good ticks (the last one at
        ``last_ms``) and counted ``rejected`` (``dataclasses.replace``, without its cost on
        every step)."""
        return TickProgress(
            last_ms,
            self.signal_seq,
            self.candles_closed,
            self.ticks_processed + ticks,
            rejected,
            self.stops_out,
        )

    def to_json(self) -> str:
        if not self.rejected and not self.stops_out:
            last_ms = "null" if self.last_ms is None else int(self.last_ms)
            return (
                f'{{"candles_closed":{int(self.candles_closed)},"last_ms":{last_ms},'
                f'"rejected":{{}},"signal_seq":{int(self.signal_seq)},'
                f'"ticks_processed":{int(self.ticks_processed)}}}'
            )
        data: dict[str, Any] = {
            "last_ms": self.last_ms,
            "signal_seq": self.signal_seq,
            "candles_closed": self.candles_closed,
            "ticks_processed": self.ticks_processed,
            "rejected": self.rejected,
        }
        if self.stops_out:
            data["stops_out"] = [out.to_json() for out in self.stops_out]
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> TickProgress:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            last_ms=data["last_ms"],
            signal_seq=int(data["signal_seq"]),
            candles_closed=int(data["candles_closed"]),
            ticks_processed=int(data["ticks_processed"]),
            rejected={str(k): int(v) for k, v in data["rejected"].items()},
            stops_out=tuple(StopOut.from_json(raw) for raw in data.get("stops_out", ())),
        )

    @property
    def ticks_rejected(self) -> int:
        return sum(self.rejected.values())
