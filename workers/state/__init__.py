"""The Redis state store of sessions: fenced leases and atomic, fenced writes."""

from workers.state.store import Lease, StateChanges, StateStore

__all__ = ["Lease", "StateChanges", "StateStore"]
