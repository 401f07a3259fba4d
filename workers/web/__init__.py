"""The operations console (``tradefleet web``): server-rendered pages, a JSON API on the same
origin, live updates by server-sent events, the operator's actions and ``/metrics``.

It reads the Redis and the database the workers use, through the same functions as the CLI,
and acts only through ``workers.operations`` (and the roll and reconcile functions the CLI
calls). Nothing connects at import time: ``create_app`` builds the app, its lifespan the
connections.
"""
