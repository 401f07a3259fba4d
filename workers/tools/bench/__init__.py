"""``tradefleet bench``: its private world (``env``), load (``load``), CPU readings (``cpu``),
and the phases that make its figures (``run``)."""
