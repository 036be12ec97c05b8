"""Soak and leaks: a restart storm keeps memory flat, and stopped players are freed at once.

CI runs 20 000 restarts; ``nox -s fuzz`` sets ``TRIO_ORCHESTRA_SOAK_RESTARTS=300000``.
"""

from __future__ import annotations

import gc
import logging
import os
import tracemalloc
import weakref

import trio
import trio.testing

import trio_orchestra as orchestra

RESTARTS = int(os.environ.get("TRIO_ORCHESTRA_SOAK_RESTARTS", "20000"))
#: The most the traced memory may grow over the whole storm, whatever its length.
BOUND = 16 * 1024


async def test_a_restart_storm_keeps_memory_flat(autojump_clock: trio.testing.MockClock) -> None:
    """A player failing every microsecond, restarted RESTARTS times: memory grows < 16 KiB."""
    runs = 0
    warm, done = trio.Event(), trio.Event()

    async def crash() -> None:
        nonlocal runs
        runs += 1
        if runs == 1000:  # warmed up: caches, the restart window, free lists
            warm.set()
        if runs == RESTARTS + 1000:
            done.set()
        await trio.sleep(1e-6)
        raise ValueError("crash")

    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(crash, restart=orchestra.Restart.ON_FAILURE, backoff=None)},
        max_restarts=5,
        period=1e-7,  # never more than one restart in a window: the storm goes on
    )
    logging.getLogger("trio_orchestra").setLevel(logging.CRITICAL)
    tracemalloc.start()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await warm.wait()
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await done.wait()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            conductor.stop()
    finally:
        tracemalloc.stop()
        logging.getLogger("trio_orchestra").setLevel(logging.NOTSET)
    assert conductor.statistics().restarts >= RESTARTS
    assert after - before < BOUND, f"{after - before} bytes more after {RESTARTS} restarts"


def start_and_stop_with_the_gc_off(conductor: orchestra.Conductor) -> int:
    """Start *conductor*, stop it, with the cyclic GC off; return what a collection then finds."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            conductor.stop()

    gc.collect()
    gc.disable()
    try:
        trio.run(main)
        return gc.collect()
    finally:
        gc.enable()


def test_a_stopped_player_leaves_no_cyclic_garbage() -> None:
    """Stopping players frees them by reference counting: the cyclic GC finds nothing.

    A player's exception kept in a frame of its own traceback used to make a cycle holding
    its task, coroutine, frames and slot until the GC ran (about 40 objects a player).
    """

    async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    players = 500
    found = start_and_stop_with_the_gc_off(
        orchestra.Conductor({f"p{n}": idle for n in range(players)})
    )
    assert found < players  # was about 40 * players; what is left is the run's own machinery


def test_a_sequential_stop_frees_each_player_once_it_is_gone() -> None:
    """A stopped player is freed by reference counting as soon as it has ended.

    Trio captures a cancelled task's ``Cancelled`` with a traceback whose frames link back
    through the call stack that cancelled it: the exit of the player stopped just before. A
    frame in that stack holding that player's own exception used to chain every stopped
    player to the next, so the whole stop's garbage (about 30 objects a player) lived until
    the last player was gone, and fed the cyclic GC on the way.
    """
    tasks: list[weakref.ref[trio.lowlevel.Task]] = []
    alive_when_last_stops: list[int] = []

    async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        tasks.append(weakref.ref(trio.lowlevel.current_task()))
        task_status.started()
        await trio.sleep_forever()

    async def last(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            alive_when_last_stops.append(sum(ref() is not None for ref in tasks))

    players = 300
    # Declared first, so stopped last.
    start_and_stop_with_the_gc_off(
        orchestra.Conductor({"last": last} | {f"p{n}": idle for n in range(players)})
    )
    assert len(tasks) == players
    # Every other player was freed as it ended (before the fix, all 300 were still alive).
    assert alive_when_last_stops == [0]
