"""Creating a trading session: validated first, then written to SQL and Redis, or not at all."""
