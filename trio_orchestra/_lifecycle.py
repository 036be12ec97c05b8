"""The lifecycle of one player, and the only place its state changes.

Theory of operation: a player is declared ``STARTING`` (waiting for its turn, or spawned and
not yet started). It becomes ``RUNNING`` when it is started: when it calls
``task_status.started()``, or, for a plain player, when its task begins. A stop moves it to
``STOPPING`` (soft phase, then hard cancel). It ends ``DONE`` (returned, or stopped in order) or
``FAILED`` (raised, failed to start, or outlived its hard cancel). ``BACKOFF`` is the wait
before a restart; a restart goes back to ``STARTING``.

Every change goes through :func:`move`, which checks it against :data:`TRANSITIONS`; an illegal
change raises and leaves the state as it was.
"""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = ["TRANSITIONS", "PlayerState", "move"]


class PlayerState(enum.Enum):
    """Where a player is in its lifecycle.

    ``STARTING``: waiting for its turn, or spawned and not yet started. ``RUNNING``: started.
    ``STOPPING``: in its soft phase or hard-cancelled. ``BACKOFF``: waiting to be restarted.
    ``DONE``: returned, or stopped in order. ``FAILED``: raised, failed to start, or outlived
    its hard cancel.

    Example::

        if state is orchestra.PlayerState.RUNNING:
            ...
    """

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    DONE = "done"
    FAILED = "failed"


_S = PlayerState

#: The legal transitions: state -> the states it may move to.
TRANSITIONS: dict[PlayerState, frozenset[PlayerState]] = {
    _S.STARTING: frozenset({_S.RUNNING, _S.STOPPING, _S.DONE, _S.FAILED}),
    _S.RUNNING: frozenset({_S.STOPPING, _S.DONE, _S.FAILED}),
    _S.STOPPING: frozenset({_S.DONE, _S.FAILED}),
    _S.BACKOFF: frozenset({_S.STARTING, _S.DONE}),
    _S.DONE: frozenset({_S.STARTING, _S.BACKOFF}),
    _S.FAILED: frozenset({_S.STARTING, _S.BACKOFF}),
}


class _Stateful(Protocol):
    state: PlayerState

    @property
    def path(self) -> str: ...


# The same table for the hot path: keyed by id() and holding tuples, since hashing an enum
# member runs Python code, while id() and a short tuple's identity scan do not.
_NEXT: dict[int, tuple[PlayerState, ...]] = {
    id(state): tuple(targets) for state, targets in TRANSITIONS.items()
}


def move(player: _Stateful, new: PlayerState) -> None:
    """Move *player* to *new*, or raise ``RuntimeError`` naming the illegal transition."""
    if new not in _NEXT[id(player.state)]:
        msg = (
            f"player {player.path!r} cannot go from {player.state.name} to {new.name};"
            " this is a bug in trio_orchestra"
        )
        raise RuntimeError(msg)
    player.state = new
