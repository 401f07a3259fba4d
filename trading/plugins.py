"""Finding third-party plugins by entry-point group (only registered names, never a path)."""

from __future__ import annotations

from collections.abc import Collection
from importlib.metadata import EntryPoint, entry_points


def plugin_entry_points(group: str, builtins: Collection[str]) -> dict[str, tuple[EntryPoint, ...]]:
    """The group's entry points by name, built-in names left out, duplicates of one target
    merged (several distinct targets under one name are kept, for the caller to refuse)."""
    found: dict[str, list[EntryPoint]] = {}
    for point in entry_points(group=group):
        if point.name in builtins:
            continue
        same = found.setdefault(point.name, [])
        if all(other.value != point.value for other in same):
            same.append(point)
    return {name: tuple(points) for name, points in found.items()}
