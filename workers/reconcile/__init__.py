"""Reconciliation with the broker (the broker is the truth; DESIGN.md).

- ``position_check``: one session's position against the broker's, under the session's lock.
- ``order_check``: one session's open orders against the broker's.
- ``schedule``: the per-period fan-out from beat, with its one-scheduler guard.
- ``context``: what both passes read about a session and its neighbours on the account.

The decisions themselves are pure (``trading.reconcile``); this package does the I/O.
"""
