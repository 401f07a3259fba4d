"""Celery tasks: thin adapters that take ids, load state, call ``trading``, write the result.

Every task module is listed in ``workers.celery_app.TASK_MODULES``; every task is declared with
its name from ``workers.dispatch.names``, whose kind (``tradefleet.<kind>.``) routes it to its
queue.
"""
