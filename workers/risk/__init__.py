"""Portfolio heat and the risk controls around it (``trading.risk`` holds the arithmetic).

- ``book``: the account risk book in Redis (one hash per account, one Lua script).
- ``entry``: the tick path's check and reservation of an entry.
- ``after_fill``: a session's open risk and daily loss after a fill changed its position.
- ``accounts``: per-account levels and the halted flag in SQL, pushed to the risk hash (the kill
  switch that sets it: ``workers.operations.halt``).
- ``equity``: an account's equity from its broker; ``scripts``: the book's Lua scripts.
"""
