"""tradovate_local — a local stand-in for Tradovate's REST and WebSocket API, for tests and demos.

What it is: an OUTSIDE system with its own process and its own in-memory state. It speaks the
wire contract of ``/work/wt/TRADOVATE-SPEC.md`` (Tradovate's public API as documented at
https://partner.tradovate.com/): ``/v1`` REST (access tokens, accounts, contracts, orders with
OSO brackets, fills, fill fees, positions, cash), the user WebSocket ``/v1/websocket``
(``user/syncrequest`` then ``props`` events) and the market-data WebSocket ``/md/v1/websocket``
(quotes and minute-bar charts), plus its own control surface under ``/_local/`` (ticks pushed
in, faults, the whole state).

How to start it::

    TRADOVATE_LOCAL_CONTROL_TOKEN=... TRADOVATE_LOCAL_USER=... TRADOVATE_LOCAL_PASSWORD=... \\
    TRADOVATE_LOCAL_CID=... TRADOVATE_LOCAL_SEC=... \\
    python -m tradovate_local --port 0 [--account DEMO0001:100000] [--market-redis URL]

It prints exactly one line ``tradovate-local listening on http://127.0.0.1:<port>`` when ready.

What it does not do: TLS, several users, OCO (``bracket2``) legs, order strategies, DOM,
histograms, tick charts, margin, Day orders expiring at the session's end, real exchange
trade dates beyond the CME 17:00 Chicago roll, persistence (a restart forgets everything).
It imports nothing from ``trading``, ``models`` or ``workers``.
"""
