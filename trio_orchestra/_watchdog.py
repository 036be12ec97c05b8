"""Seeing a tree from outside its tasks: a blocked event loop named, the tree dumped on demand.

Why this module: a player that calls blocking code (``time.sleep``, a sync driver, a long
computation) stops every other player, the health endpoint and the timers, and nothing inside
Trio can say so, because nothing inside Trio runs. ``blocked_after`` watches from a thread: it
asks the loop to run a no-op callback and waits; when the answer has not come for that many
seconds, it reads the Trio thread's stack (:func:`sys._current_frames`), finds which player's
task owns it, and logs the player and the file:line of the blocking call; once the loop runs
the callback, it logs how long the block lasted. The thread measures the system's monotonic
time: Trio's clock belongs to the Trio thread, and this one watches from outside it.

The tree dump (``SIGUSR1``, and ``/tasks`` on the health endpoint) is the status tree with
every player's await frames under it: where each one waits.
"""

from __future__ import annotations

import contextlib
import linecache
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Protocol

import trio

from ._logging import library_logger
from ._report import tree_text

if TYPE_CHECKING:
    from ._conductor import Conductor

__all__ = ["LoopWatchdog", "blocking_call", "tasks_text"]

logger = library_logger()


def tasks_text(conductor: Conductor, running: FrameType | None = None) -> str:
    """The tree, each player with its state and, under it, where it is waiting.

    *running* is the innermost frame of the Trio thread when it is read from a signal
    handler: a player blocking the loop is shown by its live frames.
    """
    where = dict(conductor._running_players(running))
    return tree_text(conductor.status(), trio.current_time(), where)


def blocking_call(frame: FrameType) -> str:
    """``file:line in function: source`` of *frame*, the innermost one of a blocked thread."""
    code = frame.f_code
    line = linecache.getline(code.co_filename, frame.f_lineno).strip()
    place = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
    return f"{place}: {line}" if line else place


class _Tree(Protocol):
    def _blocking(self, stack: set[FrameType]) -> str | None: ...


class LoopWatchdog:
    """``blocked_after``: a thread that names the player blocking the event loop.

    Every quarter of *seconds* (at most every second) it asks the loop to run a no-op
    callback. An answer that has not come *seconds* later means the loop is blocked: one
    warning names the player and the line, and a second one, once the answer comes, says how
    long the loop was blocked.

    Example::

        watchdog = LoopWatchdog(conductor, 2.0)
        watchdog.start()  # in the Trio thread
        ...
        watchdog.close()
    """

    def __init__(self, conductor: _Tree, seconds: float) -> None:
        """Take the Trio thread's token and identity: call it in the Trio thread."""
        self._conductor = conductor
        self._seconds = seconds
        self._interval = min(seconds / 4, 1.0)
        self._token = trio.lowlevel.current_trio_token()
        self._loop_thread = threading.get_ident()
        self._closed = threading.Event()
        self._answer = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="trio_orchestra blocked_after", daemon=True
        )

    def start(self) -> None:
        """Begin watching."""
        self._thread.start()

    def close(self) -> None:
        """Stop watching (the tree has returned); the thread ends at once."""
        self._closed.set()
        self._answer.set()

    def _watch(self) -> None:
        while not self._closed.is_set():
            answer = self._answer = threading.Event()
            if self._closed.is_set():
                return
            asked = time.monotonic()
            try:
                self._token.run_sync_soon(answer.set)
            except trio.RunFinishedError:
                return
            if not answer.wait(self._seconds):
                self._blocked(asked, answer)
            self._closed.wait(self._interval)

    def _blocked(self, asked: float, answer: threading.Event) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        path = self._who(frame)
        who = f"player {path}" if path is not None else "code outside the players"
        extra = {"path": path} if path is not None else None  # as every record of a player
        where = blocking_call(frame) if frame is not None else "(no frame)"
        logger.warning(
            "the event loop has been blocked for %g s by %s, at %s",
            self._seconds,
            who,
            where,
            extra=extra,
        )
        del frame
        answer.wait()
        if self._closed.is_set():
            return
        logger.warning(
            "the event loop runs again after about %.3g s blocked by %s",
            time.monotonic() - asked,
            who,
            extra=extra,
        )

    def _who(self, frame: FrameType | None) -> str | None:
        """The path of the player running *frame*'s stack, if a player is."""
        stack: set[FrameType] = set()
        while frame is not None:
            stack.add(frame)
            frame = frame.f_back
        path = None
        # Read from this thread while the Trio thread is blocked; if it moves on meanwhile,
        # the tree may change under us: then we only say where.
        with contextlib.suppress(RuntimeError):
            path = self._conductor._blocking(stack)
        return path
