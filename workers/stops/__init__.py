"""Protective stops resting at the broker for every position opened with a stop.

- ``rows``: the stops' client order ids and their SQL order rows.
- ``sync``: keeping the broker's stop orders in line with the session's position.
- ``horizon``: how far a broker that works resting orders only when asked may work them.
- ``watch``: the tick step's own view of its stop, kept in data time.
"""
