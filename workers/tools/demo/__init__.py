"""``tradefleet demo``: the run itself (``run``) and its HTML report (``report``)."""
