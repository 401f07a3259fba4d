"""Contract rolls as chained Celery jobs (DESIGN.md, "Contract rolls").

- ``marks``: the roll's marks on its session's Redis state (its SQL row: ``workers.db.roll_rows``);
- ``steps``: the idempotent steps, deciding from the broker's answers;
- ``switch``: switching the session's contract (back-adjusted candles) and ending the roll;
- ``chain``: starting (operator or beat trigger), resuming (also beat's sweep of the rolls
  nobody carries), aborting, failing a roll;
- ``carrier``: the lease under which one chain carries a running roll;
- ``wake``: waking an await step when its order's fill is applied, and the claim that lets one
  task only go past the step.
"""
