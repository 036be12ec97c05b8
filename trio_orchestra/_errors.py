"""The exceptions trio_orchestra raises, in one place.

Why this module: a supervisor is judged by how it reports failure. Every failure of a tree comes
back as one :class:`ConductorError`, an :class:`ExceptionGroup` of the *original* exceptions, so
``except* ValueError`` still works through any depth of nesting, and ``failures`` maps each
player's full path to what it raised.

The tree::

    Exception
    ├── ExceptionGroup
    │   └── ConductorError      one conductor's failures (nested conductors nest their groups)
    ├── PlayerHung              a player with ``liveness`` sent no heartbeat in time
    ├── StartTimeout            a player did not call ``task_status.started()`` in time
    ├── StopTimeout             a player outlived its hard cancel by its grace (a straggler)
    ├── TooManyRestarts         a player exceeded its conductor's restart intensity
    └── UpdateError             an update of a running conductor stopped at a player
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast, final

import trio

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ConductorError",
    "PlayerHung",
    "StartTimeout",
    "StopTimeout",
    "TooManyRestarts",
    "UpdateError",
    "add_note",
    "lone_error",
    "path_note",
]


def add_note(exc: BaseException, note: str) -> None:
    """Add a PEP 678 note to *exc* (``add_note`` on 3.11+, ``__notes__`` by hand on 3.10)."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover - exercised on 3.10 only
        notes: list[str] = list(getattr(exc, "__notes__", ()))
        notes.append(note)
        exc.__notes__ = notes  # type: ignore[attr-defined]


def lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception in *group* (at any depth) that is not a ``trio.Cancelled``, if one.

    A server player raises a handler's error as itself, as a plain player would, rather than
    inside the groups its nurseries wrap it in (with the Cancelled of what they tore down).
    """
    found: BaseException | None = None
    pending: list[BaseException] = list(group.exceptions)
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(cast("BaseExceptionGroup[BaseException]", exc).exceptions)
        elif not isinstance(exc, trio.Cancelled):
            if found is not None:
                return None
            found = exc
    return found


_NOTE_PREFIX = "raised in player "


def path_note(path: str) -> str:
    """Return the PEP 678 note that marks an exception as raised by the player at *path*."""
    return f"{_NOTE_PREFIX}{path!r}"


def _path_from_notes(exc: BaseException) -> str | None:
    """Find the player path in our own note on *exc* (kept by ``split`` and ``subgroup``)."""
    notes: Sequence[str] = getattr(exc, "__notes__", ())
    for note in reversed(notes):
        if note.startswith(_NOTE_PREFIX):
            return note[len(_NOTE_PREFIX) + 1 : -1]
    return None


class ConductorError(ExceptionGroup[Exception]):
    """The failures of one conductor run, as a group of the original exceptions.

    Each leaf carries a PEP 678 note naming the player's path, and :attr:`failures` maps every
    full path, across nested conductors, to its leaf. A nested conductor's own
    ``ConductorError`` sits in its parent's group, so the group's shape follows the tree.

    Example::

        try:
            await conductor()
        except* ConnectionError as group:
            for leaf in group.exceptions: ...
        # or, by path:
        except orchestra.ConductorError as error:
            print(error.failures["app/db/pool"])

    ``split``, ``subgroup`` and ``derive`` return a ``ConductorError`` whose ``failures`` hold
    just the leaves it kept.
    """

    _paths: dict[int, str]
    _failures: Mapping[str, BaseException] | None

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        *,
        paths: Mapping[int, str] | None = None,
    ) -> Self:
        """Build the group; *paths* maps ``id(leaf)`` to the leaf's player path."""
        self = super().__new__(cls, message, exceptions)
        self._paths = dict(paths) if paths is not None else {}
        self._failures = None
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        *,
        paths: Mapping[int, str] | None = None,
    ) -> None:
        del paths  # consumed by __new__
        super().__init__(message, exceptions)

    @property
    def failures(self) -> Mapping[str, BaseException]:
        """A read-only mapping from each failed player's full path to what it raised.

        Flattened across nested conductors: ``error.failures["app/db/pool"]``.
        """
        if self._failures is None:
            found: dict[str, BaseException] = {}
            for exc in self.exceptions:
                if isinstance(exc, ConductorError):
                    found.update(exc.failures)
                    continue
                path = self._paths.get(id(exc))
                if path is None:
                    path = _path_from_notes(exc)
                if path is not None:
                    found[path] = exc
            self._failures = types.MappingProxyType(found)
        return self._failures

    def derive(self, excs: Sequence[Exception]) -> ConductorError:  # type: ignore[override]
        """Return a ``ConductorError`` with the same message around *excs* (used by ``split``)."""
        return ConductorError(self.message, excs, paths=self._paths)


@final
class PlayerHung(Exception):
    """A player with ``liveness`` sent no :func:`heartbeat` for *liveness* seconds: it is hung.

    Its conductor stopped it (soft phase, then hard) and treats it as a failure, so its
    restart policy, backoff and restart intensity apply. Anything the player raised while it
    was being stopped is kept in a note and as ``__context__``.

    Example::

        PlayerSpec(consume, liveness=30)  # PlayerHung("app/consumer", 30) if it goes silent
    """

    def __init__(self, path: str, liveness: float) -> None:
        super().__init__(path, liveness)
        self.path = path
        self.liveness = liveness

    def __str__(self) -> str:
        return f"player {self.path!r} sent no heartbeat within its liveness of {self.liveness:g} s"


@final
class StartTimeout(Exception):
    """A ``task_status`` player did not call ``started()`` within its ``start_timeout``.

    Example::

        PlayerSpec(connect_db, start_timeout=10)  # StartTimeout("app/db", 10) if it hangs
    """

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(path, timeout)
        self.path = path
        self.timeout = timeout

    def __str__(self) -> str:
        return f"player {self.path!r} did not report started within {self.timeout:g} s"


@final
class StopTimeout(Exception):
    """A player was still running *grace* seconds after its hard cancel (a straggler).

    Trio cannot abandon a task, so the conductor waits for it and reports this once it exits.

    Example::

        except orchestra.ConductorError as error:
            isinstance(error.failures["app/jobs"], orchestra.StopTimeout)
    """

    def __init__(self, path: str, grace: float) -> None:
        super().__init__(path, grace)
        self.path = path
        self.grace = grace

    def __str__(self) -> str:
        return f"player {self.path!r} was still running {self.grace:g} s after it was cancelled"


@final
class TooManyRestarts(Exception):
    """A player needed more than ``max_restarts`` restarts within ``period`` seconds.

    Used as the leaf when the player's last exit was a normal return; a player that raised
    keeps its own exception, with a note saying the limit was exceeded.

    Example::

        except orchestra.ConductorError as error:
            error.failures["app/poller"]  # TooManyRestarts('app/poller', 3, 5.0)
    """

    def __init__(self, path: str, max_restarts: int, period: float) -> None:
        super().__init__(path, max_restarts, period)
        self.path = path
        self.max_restarts = max_restarts
        self.period = period

    def __str__(self) -> str:
        return (
            f"player {self.path!r} needed more than {self.max_restarts} restarts"
            f" within {self.period:g} s"
        )


@final
class UpdateError(Exception):
    """:meth:`Conductor.update` stopped at the player at *path*, which failed to start.

    The tree keeps running: the changes before that player were made, that player has its old
    spec back (its old run started again), and the changes after it were not made. The
    failure is ``cause`` (and ``__cause__``, as it is raised from it).

    Example::

        try:
            await conductor.update(new_players)
        except orchestra.UpdateError as error:
            log.error("reload failed at %s: %r", error.path, error.cause)
    """

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(path, cause)
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        text = str(self.cause)
        what = f"{type(self.cause).__name__}: {text}" if text else type(self.cause).__name__
        return f"the update stopped at player {self.path!r}, which failed to start: {what}"
