"""One-command tools that only the CLI imports: the demo, the benchmark, their child processes.

- ``processes``: child processes (Redis, workers, beat) that stop with their parent.
- ``demo``: real sessions trading the real data on the paper broker, with a report.
- ``bench``: the tick path's figures through real worker processes.
"""
