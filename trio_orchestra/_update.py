"""Reload: what an update changes in a running conductor, and in which order.

Why this module: an operator who changes a configuration wants the smallest change to the
running tree that makes it match, made in a safe order, and told path by path. This module
only computes it (a :class:`Plan`, from the players running now and a new declaration);
:meth:`Conductor.update` carries it out, one step at a time, and owns every state change.

The plan: players whose spec is equal (attrs equality of :class:`PlayerSpec`: the same
callable, equal arguments and options) are left alone. Missing names are removed first,
dependents first, so that a player renamed in the new declaration lets go of what it held (a
port) before its successor starts. Then the new and changed players, one at a time, in the new
declaration's dependency order, each started (ready) before the next: a player moved after a
new one starts after it. A nested conductor replaced by a conductor with the same options and
the same place in the graph is *updated* with its new players, recursively, rather than
restarted: its players that did not change keep running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, final

import attrs

from ._spec import PlayerSpec

__all__ = ["Plan", "Step", "changed_fields", "plan"]

#: What a step does to a player: start a new one, restart one with a new spec, or update the
#: players of a nested conductor.
Kind = Literal["add", "change", "update"]


@final
@attrs.frozen
class Step:
    """One player the update starts, restarts or updates; ``spec`` is its new spec."""

    name: str
    kind: Kind
    spec: PlayerSpec
    fields: tuple[str, ...] = ()  # what differs from its old spec (for a change)


@final
@attrs.frozen
class Plan:
    """An update: the players removed (in that order), then the steps (in that order)."""

    removed: tuple[str, ...]
    steps: tuple[Step, ...]

    @property
    def added(self) -> tuple[str, ...]:
        """The names of the players the update adds."""
        return tuple(step.name for step in self.steps if step.kind == "add")

    @property
    def changed(self) -> tuple[str, ...]:
        """The names of the players it restarts with a new spec, or updates."""
        return tuple(step.name for step in self.steps if step.kind != "add")

    def summary(self) -> str:
        """``"adds cache; removes old; restarts web (grace); updates jobs"``, or ``"no change"``."""
        parts: list[str] = []
        if self.added:
            parts.append("adds " + ", ".join(self.added))
        if self.removed:
            parts.append("removes " + ", ".join(self.removed))
        restarts = [
            f"{step.name} ({', '.join(step.fields)})"
            for step in self.steps
            if step.kind == "change"
        ]
        if restarts:
            parts.append("restarts " + ", ".join(restarts))
        updates = [step.name for step in self.steps if step.kind == "update"]
        if updates:
            parts.append("updates " + ", ".join(updates))
        return "; ".join(parts) or "no change"


_FIELDS = [field.name for field in attrs.fields(PlayerSpec) if field.name != "takes_task_status"]


def changed_fields(old: PlayerSpec, new: PlayerSpec) -> tuple[str, ...]:
    """The names of the fields in which *new* differs from *old* (the callable by identity)."""
    found: list[str] = []
    for name in _FIELDS:
        before, after = getattr(old, name), getattr(new, name)
        differs = before is not after if name == "fn" else before != after
        if differs:
            found.append(name)
    return tuple(found)


def plan(
    running: Mapping[str, PlayerSpec],
    start_order: Sequence[str],
    new: Mapping[str, PlayerSpec],
    new_order: Sequence[str],
    nested: Callable[[str, PlayerSpec], bool],
) -> Plan:
    """The update from the *running* players to the *new* declaration.

    *start_order* is the running players' start order (dependencies first), *new_order* the
    new declaration's. *nested* tells whether the new spec of a changed player is a nested
    conductor that can be updated in place of the running one (same options, same place).
    """
    removed = tuple(name for name in reversed(start_order) if name not in new)
    steps: list[Step] = []
    for name in new_order:
        spec = new[name]
        old = running.get(name)
        if old is None:
            steps.append(Step(name, "add", spec))
        elif old != spec:
            fields = changed_fields(old, spec)
            kind: Kind = "update" if fields == ("fn",) and nested(name, spec) else "change"
            steps.append(Step(name, kind, spec, fields))
    return Plan(removed, tuple(steps))
