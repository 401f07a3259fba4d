"""Portfolio heat and the risk controls around it (``trading.risk`` holds the arithmetic)."""
