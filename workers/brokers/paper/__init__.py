"""The paper broker: a simulated account manager with its own Redis store (never the sessions').

- ``broker``: ``PaperBroker``, the ``AccountManager`` protocol over that store.
- ``model``: prices, fills and the ``MarketBound`` in data time.
- ``scripts``: the Lua scripts that change the store atomically.
- ``reads``: reads of the store, and one error for a Redis that does not answer.
"""
