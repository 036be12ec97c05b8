"""The stop token: how a player hears that it is being stopped, and how long it has.

Why this module: Trio already makes cancellation graceful (``finally`` blocks run), so a player
that never asks is simply cancelled. A player that wants a *soft* phase, to finish in-flight work
or close a listener first, asks for its token with :func:`current_stop`; asking is what
subscribes it. The token is created only then, so players that never ask cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol, final

import trio

__all__ = ["StopToken", "current_stop"]


class _TokenOwner(Protocol):
    """What :func:`current_stop` looks for: a player's slot in its conductor."""

    token: StopToken | None

    def stop_token(self) -> StopToken: ...

    @property
    def path(self) -> str: ...


class _Supervisor(Protocol):
    """A running conductor, as seen from the task tree: it knows its players' tasks."""

    def _owner_of(self, task: trio.lowlevel.Task) -> _TokenOwner | None: ...


#: The supervising task of each running conductor -> that conductor. A player is a child task
#: of its conductor's nursery, so walking up the task tree finds it without any per-player
#: state (a context variable per player would cost memory and time on every start).
supervisors: dict[trio.lowlevel.Task, _Supervisor] = {}


def current_owner() -> _TokenOwner | None:
    """The slot of the player whose task, or one of whose descendant tasks, is running."""
    return _locate()[0]


def _locate() -> tuple[_TokenOwner | None, bool]:
    """The running player's slot, and whether this task is the player's own (not a child's)."""
    try:
        task = trio.lowlevel.current_task()
    except RuntimeError:
        return None, False
    own = True
    while True:
        nursery = task.parent_nursery
        if nursery is None:
            return None, False
        parent = nursery.parent_task
        supervisor = supervisors.get(parent)
        if supervisor is not None:
            owner = supervisor._owner_of(task)
            if owner is not None:
                return owner, own
        task = parent
        own = False


def in_own_task() -> bool:
    """Whether this code runs in a player's own task (not in a task it spawned)."""
    return _locate()[1]


def current_path(default: str) -> str:
    """The full path of the player running this code, or *default* outside a conductor."""
    owner = current_owner()
    return default if owner is None else owner.path


@final
class StopToken:
    """A player's view of its own stop, returned by :func:`current_stop`.

    Attributes:
        requested: whether a stop has been requested.
        reason: the stop's reason (``None`` before a stop, or when none was given).
        deadline: the :func:`trio.current_time` at which the player will be hard-cancelled;
            ``inf`` before a stop.

    Example::

        async def worker(queue):
            stop = orchestra.current_stop()
            while not stop.requested:
                job = await queue.receive()
                await handle(job)  # a job in progress is finished, not torn
    """

    __slots__ = ("_event", "_listeners", "_scopes", "deadline", "reason", "requested")

    def __init__(self) -> None:
        self.requested: bool = False
        self.reason: str | None = None
        self.deadline: float = math.inf
        self._event: trio.Event | None = None
        self._scopes: set[trio.CancelScope] | None = None
        self._listeners: list[Callable[[str | None], object]] | None = None

    def __repr__(self) -> str:
        if not self.requested:
            return "<StopToken not requested>"
        return f"<StopToken requested reason={self.reason!r} deadline={self.deadline!r}>"

    async def wait(self) -> None:
        """Wait until a stop is requested (return at once, after a checkpoint, if it was).

        Example::

            async def heartbeat():
                stop = orchestra.current_stop()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(beat_forever)
                    await stop.wait()
                    nursery.cancel_scope.cancel()
        """
        if self.requested:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    def soft_scope(self) -> AbstractContextManager[trio.CancelScope, bool]:
        """Return a context manager whose block is cancelled as soon as a stop is requested.

        It enters a :class:`trio.CancelScope` (the ``as`` target). Wrap the part that should
        end at the soft phase, typically an accept loop, and keep the rest (draining,
        closing) outside it::

            with stop.soft_scope():
                await accept_forever(listener)
            await drain_connections()  # runs until the deadline
        """
        return _SoftScope(self)

    def _cancel_reason(self) -> str:
        return f"soft stop requested: {self.reason}" if self.reason else "soft stop requested"

    def _add_listener(self, listener: Callable[[str | None], object]) -> None:
        """Call *listener(reason)* when the stop is requested (at once if it already was)."""
        if self.requested:
            listener(self.reason)
            return
        if self._listeners is None:
            self._listeners = []
        self._listeners.append(listener)

    def _request(self, reason: str | None, deadline: float) -> None:
        """Mark the stop as requested; the first request's reason wins, deadlines only shrink."""
        if self.requested:
            self.deadline = min(self.deadline, deadline)
            return
        self.requested = True
        self.reason = reason
        self.deadline = deadline
        if self._event is not None:
            self._event.set()
        if self._scopes:
            why = self._cancel_reason()
            for scope in self._scopes:
                scope.cancel(why)
        if self._listeners:
            listeners, self._listeners = self._listeners, None
            for listener in listeners:
                listener(reason)


@final
class _SoftScope:
    """The context manager that :meth:`StopToken.soft_scope` returns (one use)."""

    __slots__ = ("_scope", "_token")

    def __init__(self, token: StopToken) -> None:
        self._token = token
        self._scope = trio.CancelScope()

    def __enter__(self) -> trio.CancelScope:
        token = self._token
        if token.requested:
            self._scope.cancel(token._cancel_reason())
        else:
            if token._scopes is None:
                token._scopes = set()
            token._scopes.add(self._scope)
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self._token._scopes is not None:
            self._token._scopes.discard(self._scope)
        return self._scope.__exit__(exc_type, exc_value, traceback)


def current_stop() -> StopToken:
    """Return the :class:`StopToken` of the player this code runs in, subscribing it.

    A player that calls this gets the *soft phase* of a stop: its token is set and it has until
    ``token.deadline`` (its grace) to return on its own before it is cancelled. A player that
    never calls it is cancelled at once when stopped. Call it at the top of the player, before
    its first checkpoint, so that no stop can come first.

    Raises:
        RuntimeError: if called outside a player.

    Example::

        async def server():
            stop = orchestra.current_stop()
            with stop.soft_scope():
                await serve_forever()
    """
    owner = current_owner()
    if owner is None:
        msg = "current_stop() was called outside a player; only code a Conductor runs has one"
        raise RuntimeError(msg)
    return owner.stop_token()


def stop_or_never() -> StopToken:
    """The token a ready-made player listens to: see below; never ``RuntimeError``.

    * In a player's own task: its token, which subscribes it (as :func:`current_stop`).
    * In a task the player started: the player's token if the player subscribed already,
      else a token that is never requested. A player that did not ask for its token must not
      be subscribed behind its back (it would wait its grace for nothing), so there only
      cancellation stops the ready-made player, as it stops its parent.
    * Outside a conductor: a token that is never requested.
    """
    owner, own = _locate()
    if owner is None:
        return StopToken()
    if own:
        return owner.stop_token()
    return owner.token if owner.token is not None else StopToken()
