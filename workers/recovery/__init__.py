"""Recovery of a session whose Redis state is lost (DESIGN.md: "A session whose Redis state is
lost is rebuilt from SQL and the broker").

- ``snapshots``: the strategy-state snapshot the tick path keeps in SQL after each step that
  closed candles.
- ``rebuild``: the pure pieces (signal sequence, candle re-warming, the state itself).
- ``sources``: what recovery reads: SQL rows, the broker, the instrument's tick stream.
- ``recover``: one session's recovery, under a guard so that two never run at once.
- ``trigger``: asking for a recovery once (a worker met a missing session; beat's fan-out).
"""
