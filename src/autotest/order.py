"""The pure decision of which package runs when, and why: groups, each in topological order."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from .discovery import Package
from .graph import users_of, users_reached

Edge = tuple[Package, Package]  # (user, used)


@dataclass(frozen=True)
class Step:
    """One package in a cycle's order, with the reason it stands there."""

    package: Package
    reason: str


def topological(
    group: Iterable[Package],
    uses: Mapping[Package, set[Package]],
    rank: Callable[[Package], Any],
    weak: Collection[Edge] = (),
) -> list[Package]:
    """``group`` with each package after the packages of the group it uses, otherwise by
    ``rank``.  A cycle is broken stably where it costs least: at a package whose unmet uses
    are all ``weak`` edges (a test or dev dependency) if there is one, then the one with the
    fewest unmet uses, then by rank; so a package runs after what it needs at run time."""
    members = set(group)
    waiting = {p: {u for u in uses.get(p, ()) if u in members and u != p} for p in members}
    ordered: list[Package] = []

    def cost(p: Package) -> tuple[bool, int, Any]:
        return (any((p, u) not in weak for u in waiting[p]), len(waiting[p]), rank(p))

    while waiting:
        ready = [p for p, unmet in waiting.items() if not unmet]
        pick = min(ready, key=rank) if ready else min(waiting, key=cost)
        ordered.append(pick)
        del waiting[pick]
        for unmet in waiting.values():
            unmet.discard(pick)
    return ordered


@dataclass(frozen=True)
class Groups:
    """A cycle's packages in the order they run: the changed ones, their dependents, those
    that failed last time, the rest."""

    changed: list[Package]
    dependents: list[Package]
    failed: list[Package]
    rest: list[Package]

    def all(self) -> list[Package]:
        return [*self.changed, *self.dependents, *self.failed, *self.rest]


def cycle_order(
    packages: Sequence[Package],
    changed: Mapping[Package, float],
    failed: Iterable[Package],
    uses: Mapping[Package, set[Package]],
    labels: Mapping[Edge, str] | None = None,
    weak: Collection[Edge] = (),
) -> list[Step]:
    """Changed packages first (most recent first), then the packages that use them (nearest
    first), then those that failed last time, then all the rest, the most used first: what a
    change did shows before an old failure elsewhere can stop the cycle.  Inside each group a
    package runs after the packages it uses, so that a failure shows in the package that
    causes it.  ``uses`` may hold packages not in ``packages`` (not chosen to run): dependents
    are still reached through them."""
    users = users_of(uses)
    distance = users_reached(sorted(changed, key=lambda p: (-changed[p], p.rel)), users)
    used_by = {p: len(users_reached([p], users)) for p in packages}
    groups = cycle_groups(set(packages), changed, set(failed), distance, used_by, uses, weak)
    position = {p: index for index, p in enumerate(groups.all())}
    labels = labels or {}
    reasons = {p: "changed" for p in groups.changed}
    reasons.update({p: uses_reason(p, distance[p][1], labels) for p in groups.dependents})
    reasons.update({p: "failed last time" for p in groups.failed})
    for package in groups.rest:
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
    for group in (groups.changed, groups.dependents, groups.failed, groups.rest):
        for package in group:  # a use of a package that runs later in the group: a cycle
            later = [
                u for u in uses.get(package, ()) if u in group and position[u] > position[package]
            ]
            if later:
                cycle = cycle_reason(package, min(later, key=position.__getitem__), labels)
                reasons[package] = f"{reasons[package]}; {cycle}" if reasons[package] else cycle
    return [Step(p, reasons[p]) for p in groups.all()]


def cycle_groups(
    known: set[Package], changed: Mapping[Package, float], failed: set[Package],
    distance: Mapping[Package, tuple[int, Package]], used_by: Mapping[Package, int],
    uses: Mapping[Package, set[Package]], weak: Collection[Edge],
) -> Groups:  # fmt: skip
    first = {p for p in changed if p in known}
    dependents = set(distance) & known - first
    failed_group = failed & known - first - dependents
    rest = known - first - dependents - failed_group
    reached_at = {p: index for index, p in enumerate(distance)}
    return Groups(
        topological(first, uses, lambda p: (-changed[p], p.rel), weak),
        topological(dependents, uses, reached_at.__getitem__, weak),
        topological(failed_group, uses, lambda p: p.rel, weak),
        topological(rest, uses, lambda p: (-used_by[p], p.rel), weak),
    )


def uses_reason(user: Package, used: Package, labels: Mapping[Edge, str]) -> str:
    """``uses libs/core``, with how when it is not a dependency of the code: ``(tests)``."""
    label = labels.get((user, used), "")
    return f"uses {used.rel}" + (f" ({label})" if label else "")


def cycle_reason(user: Package, used: Package, labels: Mapping[Edge, str]) -> str:
    """Why ``user`` runs before ``used``, which it uses: a dependency cycle, broken at this
    edge (the weakest of the cycle's, where one is weaker)."""
    label = labels.get((user, used), "")
    return f"in a cycle with {used.rel}, broken at this edge" + (f" ({label})" if label else "")
