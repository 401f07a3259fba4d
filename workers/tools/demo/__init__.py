"""``tradefleet demo``: the run itself (``run``), its summary lines (``summary``) and its HTML
report (``report``)."""
