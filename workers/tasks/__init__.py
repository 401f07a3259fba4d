"""Celery tasks: thin adapters that take ids, load state, call ``trading``, write the result.

Every task module is listed in ``workers.celery_app.TASK_MODULES``; every task name starts
with ``tradefleet.<kind>.`` so that ``workers.celery_app.task_routes`` sends it to its queue.
"""
