"""A dependency graph: a database and a cache, a web app after both, workers after the database.

Run it with ``python docs/examples/graph.py``: it prints when each player starts, fails and
stops, seconds from its start, and ends by itself 24 s later. The tests run :func:`main` on
Trio's mock clock, where every time is exact, and compare its lines with
``graph_output.txt``.
"""

from __future__ import annotations

import trio

import trio_orchestra as orchestra


class Log:
    """Prints each line with the seconds since the program began."""

    def __init__(self) -> None:
        """Start the count now."""
        self.start = trio.current_time()

    def __call__(self, text: str) -> None:
        """Print *text*, after the time."""
        print(f"{trio.current_time() - self.start:4.1f} s  {text}")


async def service(  # noqa: PLR0913 - a stand-in, with every time it takes as an argument
    log: Log,
    name: str,
    connect: float,
    close: float,
    outages: list[float] | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A stand-in for a real player: ready *connect* s after it begins; *close* s to stop.

    If *outages* holds a time, this run loses its connection that many seconds after it is
    ready (and the next run takes the next time).
    """
    stop = orchestra.current_stop()
    log(f"{name} starting")
    await trio.sleep(connect)
    log(f"{name} ready")
    task_status.started()
    if outages:
        with stop.soft_scope():  # a stop before the outage: no failure
            await trio.sleep(outages.pop(0))
            log(f"{name} lost its connection")
            raise ConnectionError(f"{name}: connection lost")
    await stop.wait()
    left = stop.deadline - trio.current_time()
    log(f"{name} stopping ({stop.reason}), {left:.1f} s left")
    try:
        await trio.sleep(close)  # closing connections, finishing the work in hand
    finally:
        log(f"{name} gone" if stop.deadline > trio.current_time() else f"{name} cut off")


def build(log: Log) -> orchestra.Conductor:
    """The graph. db and cache depend on nothing; web on both; workers on db."""
    again = orchestra.Restart.ON_FAILURE
    return orchestra.Conductor(
        {
            "db": orchestra.PlayerSpec(
                service,
                log,
                "db",
                2,  # connects in 2 s
                1,  # closes in 1 s
                [8],  # its first run loses its connection 8 s after it is ready
                after=(),
                grace=5,
                restart=again,
                backoff=orchestra.Backoff(initial=1, jitter=0),
            ),
            "cache": orchestra.PlayerSpec(service, log, "cache", 1, 1, after=(), grace=2),
            "web": orchestra.PlayerSpec(
                service, log, "web", 1, 2, after=("db", "cache"), grace=10, restart=again
            ),
            "workers": orchestra.PlayerSpec(
                service, log, "workers", 1, 3, after=("db",), grace=15, restart=again
            ),
        },
        name="app",
        strategy="rest_for_one",  # a player restarts with everything after it
    )


async def main() -> orchestra.Conductor:
    """Start the graph, let db fail once, then stop everything within 3.5 s."""
    log = Log()
    conductor = build(log)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        log(f"app started; its stop budget is {conductor.stop_budget():g} s")
        await trio.sleep_until(log.start + 20)
        log("deploy: stop within 3.5 s")
        conductor.stop("deploy", within=3.5)
    log("app returned")
    return conductor


if __name__ == "__main__":
    trio.run(main)
