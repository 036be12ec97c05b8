"""A poller with a liveness: it beats once per poll; a call with no timeout hangs it.

Run it with ``python docs/examples/liveness.py``: the poller's third call never answers, its
conductor finds it hung, logs where it is stuck, and restarts it; the program then runs until
Ctrl-C, with the blocked-loop watchdog on and ``kill -USR1 <pid>`` dumping the tree. The
tests run :func:`main` on Trio's mock clock, where every time is exact, and compare what it
prints with ``liveness_output.txt``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

import trio_orchestra as orchestra
from trio_orchestra import events


class Upstream:
    """A service that answers in 1 s, except one call (the third), which never answers."""

    def __init__(self, never_answers: int = 3) -> None:
        """No call yet; call number *never_answers* will hang."""
        self.calls = 0
        self.never_answers = never_answers

    async def fetch(self) -> int:
        """One call: its number, a second later; or no answer at all."""
        self.calls += 1
        if self.calls == self.never_answers:
            await trio.sleep_forever()  # no answer, and no timeout: hung
        await trio.sleep(1)
        return self.calls


async def poller(upstream: Upstream) -> None:
    """Poll the upstream again and again, with one heartbeat per poll."""
    while True:
        orchestra.heartbeat()  # "I made progress": once per round of the loop
        await upstream.fetch()


def build(
    upstream: Upstream, on_event: Callable[[events.Event], object] | None = None
) -> orchestra.Conductor:
    """The tree: one poller that must beat every 3 s, restarted when it hangs."""
    return orchestra.Conductor(
        {
            "poller": orchestra.PlayerSpec(
                poller,
                upstream,
                liveness=3,
                restart=orchestra.Restart.ON_FAILURE,
                backoff=orchestra.Backoff(initial=1, jitter=0),
            ),
        },
        name="app",
        on_event=on_event,
    )


def show(event: events.Event) -> None:
    """Print the events that tell the story, with their Trio time."""
    if isinstance(event, events.Hung):
        print(f"{event.time:4.1f} s  {event.path} hung: silent for {event.silent:g} s")
    elif isinstance(event, events.Failed):
        print(f"{event.time:4.1f} s  {event.path} failed: {type(event.error).__name__}")
    elif isinstance(event, events.Restarting):
        print(f"{event.time:4.1f} s  {event.path} restarting in {event.delay:g} s")
    elif isinstance(event, events.Ready):
        print(f"{event.time:4.1f} s  {event.path} running")


async def main() -> orchestra.Conductor:
    """Run the tree for 11.5 s (the clock starts at 0), then stop it."""
    conductor = build(Upstream(), on_event=show)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(11.5)  # between two heartbeats: the last one is certain
        node = conductor.status().children["poller"]
        print(f"{trio.current_time():4.1f} s  last heartbeat at {node.last_heartbeat:g} s")
        conductor.stop("done")
    return conductor


if __name__ == "__main__":
    # The program as it would run in production: the runner watches the event loop too
    # (blocked_after) and dumps the tree on SIGUSR1 (the default), and serves /tasks.
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
    orchestra.run(
        build(Upstream(), on_event=show),
        health=os.environ.get("HEALTH", "127.0.0.1:8080"),
        blocked_after=1.0,
    )
