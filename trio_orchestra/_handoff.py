"""Listening sockets that outlive one run of their server, so a restart refuses no connection.

Why this module: when a server player is restarted (by a reload, ``restart()``, a group
restart or its restart policy), closing its listening socket and binding a new one leaves a
gap in which connections are refused. Instead its conductor keeps the socket open between the
two runs: the old run stops accepting and finishes its connections in flight, the kernel goes
on queueing new ones in the socket's backlog, and the new run accepts them from the same
socket. A client sees a short wait, never a refusal.

Each run serves a duplicate of the kept socket (:meth:`socket.socket.dup`), which the server
library may close as it likes (trio's and hypercorn's accept loops close their listeners when
they stop); the original stays with the conductor. On a stop that is not followed by a new
run, the player closes the original at once, so new connections are refused as before. The
conductor closes what a player left: when its next run is started without claiming it (a
new port), or when it will not run again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from ._stop import current_owner

__all__ = ["Closable", "claim", "close_all", "keep", "will_run_again"]


class Closable(Protocol):
    """A socket, as this module needs it."""

    def close(self) -> None: ...


class _Keeper(Protocol):
    def _claim_kept(self, player: object, key: str) -> Sequence[Closable] | None: ...

    def _keep(self, player: object, key: str, sockets: Sequence[Closable]) -> bool: ...

    def _will_run_again(self, player: object) -> bool: ...


class _Owner(Protocol):
    @property
    def conductor(self) -> _Keeper: ...


def _owner() -> _Owner | None:
    owner = current_owner()
    return owner if owner is not None and hasattr(owner, "conductor") else None  # type: ignore[return-value]


def close_all(sockets: Iterable[Closable]) -> None:
    """Close each of *sockets*."""
    for sock in sockets:
        sock.close()


def claim(key: str) -> Sequence[Closable] | None:
    """The sockets the previous run of the running player kept under *key*, if any."""
    owner = _owner()
    return None if owner is None else owner.conductor._claim_kept(owner, key)


def keep(key: str, sockets: Sequence[Closable]) -> bool:
    """Leave *sockets* to the running player's next run; ``False``: close them yourself."""
    owner = _owner()
    return owner is not None and owner.conductor._keep(owner, key, sockets)


def will_run_again() -> bool:
    """Whether the stop of the running player is one after which it runs again (a restart)."""
    owner = _owner()
    return owner is not None and owner.conductor._will_run_again(owner)
