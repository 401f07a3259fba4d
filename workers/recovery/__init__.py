"""Recovery of a session whose Redis state is lost (DESIGN.md: "A session whose Redis state is
lost is rebuilt from SQL and the broker"): read, plan, build, write.

- ``sources``: what recovery reads: SQL rows, the broker, the instrument's tick stream, and the
  strategy-state snapshot the tick path keeps (``workers.ticks.snapshots``).
- ``trading.recovery`` plans, purely: the signal sequence, candle re-warming, the position.
- ``rebuild``: builds the stored types from the plan (trades, working copies, the state itself).
- ``recover``: one session's recovery, under a guard so that two never run at once; it writes.
- ``trigger``: asking for a recovery once (a worker met a missing session; beat's fan-out).
"""
