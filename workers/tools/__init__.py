"""One-command tools that only the CLI imports: the demo, the benchmark, their child processes.

- ``processes``: child processes (Redis, workers, beat) that stop with their parent.
- ``demo``: real sessions trading the real data on the paper broker, with a report.
- ``bench``: the tick path's figures through real worker processes.
- ``drill``: fleet drills on hosts built from network namespaces on this machine (``net``: the
  network and its faults, ``impair``: delay and loss without netem, ``services``: Redis,
  the broker's Redis and PostgreSQL on the services host).
"""
