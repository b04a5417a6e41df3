"""The pure decision of which package runs when, and why: groups, each in topological order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from .discovery import Package
from .graph import users_of, users_reached


@dataclass(frozen=True)
class Step:
    """One package in a cycle's order, with the reason it stands there."""

    package: Package
    reason: str


def topological(
    group: Iterable[Package], uses: Mapping[Package, set[Package]], rank: Callable[[Package], Any]
) -> list[Package]:
    """``group`` with each package after the packages of the group it uses, otherwise by
    ``rank``.  A cycle is broken stably: at the package with the fewest unmet uses, by rank."""
    members = set(group)
    waiting = {p: {u for u in uses.get(p, ()) if u in members and u != p} for p in members}
    ordered: list[Package] = []
    while waiting:
        ready = [p for p, unmet in waiting.items() if not unmet]
        pick = (
            min(ready, key=rank)
            if ready
            else min(waiting, key=lambda p: (len(waiting[p]), rank(p)))
        )
        ordered.append(pick)
        del waiting[pick]
        for unmet in waiting.values():
            unmet.discard(pick)
    return ordered


def cycle_order(
    packages: Sequence[Package],
    changed: Mapping[Package, float],
    failed: Iterable[Package],
    uses: Mapping[Package, set[Package]],
    labels: Mapping[tuple[Package, Package], str] | None = None,
) -> list[Step]:
    """Changed packages first (most recent first), then those that failed last time, then the
    dependents of the changed ones (nearest first), then all the rest, the most used first.
    Inside each group a package runs after the packages it uses, so that a failure shows in
    the package that causes it.  ``uses`` may hold packages not in ``packages`` (not chosen
    to run): dependents are still reached through them."""
    known = set(packages)
    users = users_of(uses)
    distance = users_reached(sorted(changed, key=lambda p: (-changed[p], p.rel)), users)
    used_by = {p: len(users_reached([p], users)) for p in known}
    first = [p for p in changed if p in known]
    failed_group = set(failed) & known - set(first)
    dependents = set(distance) & known - set(first) - failed_group
    rest = known - set(first) - failed_group - dependents
    labels = labels or {}
    reached_at = {p: index for index, p in enumerate(distance)}
    groups = [
        topological(first, uses, lambda p: (-changed[p], p.rel)),
        topological(failed_group, uses, lambda p: p.rel),
        topological(dependents, uses, reached_at.__getitem__),
        topological(rest, uses, lambda p: (-used_by[p], p.rel)),
    ]
    position = {p: index for index, p in enumerate(p for group in groups for p in group)}
    reasons = {p: "changed" for p in groups[0]}
    reasons.update({p: "failed last time" for p in groups[1]})
    reasons.update({p: uses_reason(p, distance[p][1], labels) for p in groups[2]})
    for package in groups[3]:
        ran = [
            u for u in uses.get(package, ()) if position.get(u, len(position)) < position[package]
        ]
        count = used_by[package]
        reasons[package] = (
            uses_reason(package, max(ran, key=position.__getitem__), labels)
            if ran
            else f"used by {count} package{'s' if count > 1 else ''}"
            if count
            else ""
        )
    for group in groups:  # a use of a package that runs later in the group is a broken cycle
        for package in group:
            later = [
                u for u in uses.get(package, ()) if u in group and position[u] > position[package]
            ]
            if later:
                cycle = f"in a cycle with {min(later, key=position.__getitem__).rel}"
                reasons[package] = f"{reasons[package]}; {cycle}" if reasons[package] else cycle
    return [Step(p, reasons[p]) for group in groups for p in group]


def uses_reason(user: Package, used: Package, labels: Mapping[tuple[Package, Package], str]) -> str:
    """``uses libs/core``, with how when it is not a dependency of the code: ``(tests)``."""
    label = labels.get((user, used), "")
    return f"uses {used.rel}" + (f" ({label})" if label else "")
