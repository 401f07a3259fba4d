"""The order lifecycle after a decision: sending to the session's broker, and fills coming back.

- ``send``: sending an order whose row is written, in the order the session decided them.
- ``fills``: applying the broker's fills to sessions, once per execution id.
- ``sweep``: sending again the orders whose send was lost with its worker's host.
"""
