"""The durable record in SQL: engines and migrations, and typed access to its rows.

- ``engines``: one engine per URL per process (dropped in a forked child), migrations.
- ``session_rows``: the sessions' rows and their status.
- ``event_rows``: the event log (``tradefleet events``), once per dedupe key where it has one.
- ``order_rows``: order rows (written before an order is sent) and fill rows (once per
  execution id).
- ``roll_rows``: a contract roll's row and the progress of its steps.
"""
