"""Fleet drills: faults injected into a running fleet, judged against an undisturbed run."""
