"""Periodic players: ``every(interval, fn)`` runs a tick on a fixed beat until stopped.

Why this module: "run this every minute" is the most common long-lived worker after a server,
and the naive ``while True: await fn(); await trio.sleep(interval)`` drifts by the tick's own
duration, bursts after a stall if corrected naively, and tears a tick in half on shutdown. Here
ticks are spaced from start to start on Trio's clock, an overrun skips the missed beats, and a
stop waits for the tick in progress but never starts a new one.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

from ._checks import check_number
from ._spec import check_async_callable, describe
from ._stop import stop_or_never

__all__ = ["every"]


def _next_beat(start: float, interval: float, beat: int, now: float) -> int:
    """The first beat after *beat* that is not already past at *now* (missed ones skipped)."""
    due = (now - start) / interval
    nearest = round(due)
    # A tick that ends exactly on a beat runs the next one at once; float noise must not make
    # it look a hair late (and skip it).
    if math.isclose(due, nearest, rel_tol=0, abs_tol=1e-9):
        due = nearest
    return max(beat + 1, math.ceil(due))


def every(
    interval: float, fn: Callable[..., Awaitable[object]], *args: object
) -> Callable[[], Awaitable[None]]:
    """Return a player that calls ``await fn(*args)`` every *interval* seconds until stopped.

    * The first tick runs at once, when the player starts.
    * Ticks are spaced from tick **start** to tick start (a fixed beat at ``start + k *
      interval`` on Trio's clock), so a tick's own duration does not make the beat drift.
    * A tick that overruns one or more beats makes the player skip them: the next tick runs at
      the first beat still ahead, never several in a burst. A tick that ends exactly on a beat
      is followed by the next one at once.
    * A stop waits for the tick in progress (it runs in the soft phase, until the player's
      grace is over) and starts no new one; between ticks the player returns at once. Only the
      hard phase cancels a tick mid-way.
    * An exception from *fn* fails the player: give it a restart policy to keep it ticking
      (a restart starts a new beat).

    Args:
        interval: seconds between the starts of two ticks; more than zero.
        fn: an async callable, called as ``fn(*args)`` on each tick.
        *args: positional arguments for *fn*.

    Example::

        async def report(queue):
            print("queue length:", queue.statistics().current_buffer_used)


        conductor = orchestra.Conductor(
            {
                "report": orchestra.every(60, report, queue),
            }
        )
    """
    where = f"every({interval!r}, {describe(fn)})"
    check_number(interval, "the interval", where, unit="seconds")
    if interval == 0 or math.isinf(interval):
        msg = f"{where}: the interval must be more than zero and finite, not {interval!r}"
        raise ValueError(msg)
    check_async_callable(fn, f"{where}: the tick function")

    async def every() -> None:
        stop = stop_or_never()
        start = trio.current_time()
        beat = 0
        while True:
            await fn(*args)
            beat = _next_beat(start, interval, beat, trio.current_time())
            with stop.soft_scope():  # already cancelled if the stop came during the tick
                await trio.sleep_until(start + beat * interval)
            if stop.requested:
                return

    every.__qualname__ = f"every({interval:g}, {describe(fn)})"
    return every
