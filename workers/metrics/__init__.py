"""Fleet metrics: counters the workers raise, kept in Redis so that every process on every host
adds to one figure, and read by the console's ``/metrics`` at scrape time."""
