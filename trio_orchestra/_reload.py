"""Reload on SIGHUP: call the program's factory again and update the running root with it.

Why this module: a service whose configuration changed should not need a restart, with its
dropped connections and cold caches. With ``run(factory, reload=True)`` the runner builds the
tree by calling the factory (a plain function that reads the configuration and returns a
:class:`Conductor`); on ``SIGHUP`` it calls it again and hands the new players to
:meth:`Conductor.update`, which changes only what differs. systemd hears ``RELOADING=1`` (with
``MONOTONIC_USEC=``, as ``Type=notify-reload`` requires) before, and ``READY=1`` after, also
after a failed reload: the program goes on as it was, and says so in its log and ``/status``.
Signals that come while a reload runs make one more reload after it, not one each.
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import time
from collections.abc import Callable, Generator
from types import FrameType
from typing import cast

import trio

from ._conductor import Conductor
from ._errors import UpdateError
from ._logging import library_logger
from ._report import describe_error, one_line
from ._spec import describe
from ._systemd import SystemdNotifier

__all__ = ["Reloader", "check_factory", "first_conductor"]

logger = library_logger()

#: The signal that reloads, where the platform has it.
RELOAD_SIGNAL: int | None = getattr(signal, "SIGHUP", None)
#: How long a reload waits for a group restart in progress to end before trying anyway, and
#: how often it looks.
GROUP_WAIT = 60.0
_GROUP_POLL = 0.1
#: Failures whose one sentence says it all: no traceback in the log.
_SAID = (UpdateError, ValueError, TypeError, RuntimeError)


def _made_by(factory: Callable[[], object]) -> Conductor:
    made = factory()
    if not isinstance(made, Conductor):
        msg = (
            f"the reload factory {describe(factory)} returned a {type(made).__name__},"
            " not a Conductor"
        )
        raise TypeError(msg)
    return made


def _restarting_a_group(conductor: Conductor) -> bool:
    return conductor._group is not None


def first_conductor(factory: object) -> Conductor:
    """Check that *factory* is a plain callable, and call it for the first tree."""
    check_factory(factory)
    return _made_by(cast("Callable[[], object]", factory))


def check_factory(factory: object) -> None:
    """Raise ``TypeError`` unless *factory* is a plain (not async) callable, not a conductor."""
    if (
        isinstance(factory, Conductor)
        or not callable(factory)
        or inspect.iscoroutinefunction(factory)
    ):
        what = type(factory).__name__ if not callable(factory) else describe(factory)
        msg = (
            "the runner: reload=True needs a factory, a plain function that returns a"
            f" Conductor, not {what}"
        )
        raise TypeError(msg)


class Reloader:
    """Reloads *conductor* from *factory* when asked (SIGHUP), one reload at a time.

    Example::

        reloader = Reloader(factory, conductor)
        nursery.start_soon(reloader.run)
        with reloader.on_signal():
            ...
    """

    def __init__(self, factory: Callable[[], object], conductor: Conductor) -> None:
        """Reload nothing yet; the runner sets :attr:`notifier` when systemd listens."""
        self._factory = factory
        self._conductor = conductor
        self.notifier: SystemdNotifier | None = None
        self._wake = trio.Event()
        self._pending: str | None = None
        self.reloads = 0
        self.last: dict[str, object] | None = None  # the last reload's outcome, for /status

    def request(self, why: str) -> None:
        """Reload once the reload in progress, if any, is done (Trio thread only)."""
        self._pending = why
        self._wake.set()

    @contextlib.contextmanager
    def on_signal(self) -> Generator[None, None, None]:
        """While inside, SIGHUP requests a reload."""
        signum = RELOAD_SIGNAL
        if signum is None:  # pragma: no cover - Windows
            yield
            return
        token = trio.lowlevel.current_trio_token()

        def handle(_signum: int, _frame: FrameType | None) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self.request, "received SIGHUP")

        previous = signal.signal(signum, handle)
        try:
            yield
        finally:
            signal.signal(signum, previous)

    async def run(self) -> None:
        """Reload whenever requested, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._pending is not None:
                why, self._pending = self._pending, None
                await self._reload(why)

    async def _group_restart_done(self) -> None:
        """Wait (up to :data:`GROUP_WAIT`) while the root restarts a group of players.

        An update is refused during a group restart (``rest_for_one``, ``one_for_all``), which
        lasts its failed player's backoff: a reload waits for it rather than fail.
        """
        conductor = self._conductor
        if not _restarting_a_group(conductor):
            return
        logger.info(
            "the reload waits for the group restart in progress to end",
            extra={"path": conductor.path},
        )
        with trio.move_on_after(GROUP_WAIT):
            while _restarting_a_group(conductor):  # noqa: ASYNC110 - the conductor has no event
                await trio.sleep(_GROUP_POLL)

    async def _reload(self, why: str) -> None:
        conductor = self._conductor
        self.reloads += 1
        notifier = self.notifier
        if notifier is not None:
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            notifier.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS=reloading: {why}")
        logger.info(
            "reloading (%s): calling %s",
            why,
            describe(self._factory),
            extra={"path": conductor.path},
        )
        error: BaseException | None = None
        try:
            new = _made_by(self._factory)
            if not new._same_options(conductor):
                logger.warning(
                    "the reload's root conductor has other options than the running one;"
                    " a reload changes the players only: restart the program to change them",
                    extra={"path": conductor.path},
                )
            await self._group_restart_done()
            await conductor.update(new.players)
        except Exception as exc:
            error = exc
            logger.error(  # noqa: TRY400 - a traceback only where the message is not enough
                "the reload failed, the program goes on as it was: %s",
                describe_error(exc),
                exc_info=None if isinstance(exc, _SAID) else exc,
                extra={"path": conductor.path},
            )
        self.last = {
            "number": self.reloads,
            "time": trio.current_time(),
            "why": why,
            "ok": error is None,
            "error": describe_error(error),
        }
        if notifier is not None:
            status = (
                one_line(conductor.status())
                if error is None
                else f"reload failed: {describe_error(error)}"
            )
            notifier.send("READY=1", "STATUS=" + " ".join(status.split()))
