"""Change a running tree with Conductor.update(), at exact times: ``python reload.py``.

The tree runs on Trio's MockClock (time jumps when every task waits), so the times printed are
the ones a real run would take. Version 1: a database, a web app after it, and an old worker.
Version 2 keeps the database (an equal spec), removes the old worker, adds a cache, and moves
the web app after both with a new argument. Version 3's web app fails to start: the update
stops there, and the web app of version 2 is started again.
"""

from __future__ import annotations

import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra import events


async def service(
    name: str, ready: float, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Ready after *ready* s (connecting, binding), started as *name*; 0.5 s to close."""
    stop = orchestra.current_stop()
    await trio.sleep(ready)
    task_status.started(name)
    await stop.wait()
    await trio.sleep(0.5)


async def broken(
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # noqa: ARG001 - never started
) -> None:
    """A web app that cannot start: its port is taken."""
    await trio.sleep(0.5)
    raise OSError("address already in use")


# Module-level functions, arguments in the spec: a spec built again is equal to the first.
VERSION_1 = {
    "db": orchestra.PlayerSpec(service, "db", 1, after=()),
    "old": orchestra.PlayerSpec(service, "old", 0.5, after=()),
    "web": orchestra.PlayerSpec(service, "web v1", 0.5, after=("db",)),
}
VERSION_2 = {
    "db": orchestra.PlayerSpec(service, "db", 1, after=()),  # equal: left alone
    "cache": orchestra.PlayerSpec(service, "cache", 2, after=()),  # new
    "web": orchestra.PlayerSpec(service, "web v2", 0.5, after=("db", "cache")),  # changed
}
VERSION_3 = {**VERSION_2, "web": orchestra.PlayerSpec(broken, after=("db", "cache"))}


def show(event: events.Event) -> None:
    """Print the events of the start, the stop and the updates, with their times."""
    if isinstance(event, (events.Updating, events.Updated)):
        changes = {"adds": event.added, "removes": event.removed, "changes": event.changed}
        said = "; ".join(f"{verb} {', '.join(names)}" for verb, names in changes.items() if names)
        print(f"{event.time:g} s {type(event).__name__}: {said}")
    elif isinstance(event, events.UpdateFailed):
        print(f"{event.time:g} s UpdateFailed at {event.player}")
    elif isinstance(event, events.Failed):
        print(f"{event.time:g} s {event.path} failed: {event.error!r}")
    elif isinstance(event, (events.Ready, events.Stopped)):
        print(f"{event.time:g} s {event.path} {type(event).__name__.lower()}")


async def main() -> orchestra.Conductor:
    """Run version 1, update to 2 at 5 s, try 3 at 10 s, stop at 15 s."""
    conductor = orchestra.Conductor(VERSION_1, name="app", on_event=show)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep_until(5)
        await conductor.update(VERSION_2)
        await trio.sleep_until(10)
        try:
            await conductor.update(VERSION_3)
        except orchestra.UpdateError as error:
            print(f"{trio.current_time():g} s {error}")
        await trio.sleep_until(15)
        conductor.stop("the end")
    return conductor


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
