"""The ``tradefleet`` command line."""
