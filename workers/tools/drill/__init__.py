"""Fleet drills: namespaced hosts on this machine, their services, and the runs on them."""
