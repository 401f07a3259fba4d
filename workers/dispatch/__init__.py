"""How one subsystem asks another for work: by task name, through Celery.

- ``names``: every task's name and the queue it runs on (the one place either is spelled).
- ``recovery``: asking for a session's recovery, once (a worker met a session without state;
  beat's fan-out found one).
- ``rolls``: waking a roll's await step when its order's fill is applied.
- ``sending``: many tasks at once, none keeping a result (the tick path's sends and drainers).
"""
