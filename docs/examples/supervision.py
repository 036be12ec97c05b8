"""A flaky consumer restarted with backoff, beside a cache it depends on (``rest_for_one``).

Run it with ``python docs/examples/supervision.py`` and watch the restarts in the log; stop it
with Ctrl-C. The tests run :func:`main` on Trio's mock clock.
"""

import logging
from collections.abc import Callable

import trio

import trio_orchestra as orchestra
from trio_orchestra import events

attempts = 0


async def cache(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A dependency: ready at once, runs until stopped."""
    task_status.started()
    await trio.sleep_forever()


async def consumer() -> None:
    """Fails on its first two runs (say, the broker is not up yet), then consumes."""
    global attempts  # noqa: PLW0603 - a module-level counter keeps the example short
    attempts += 1
    await trio.sleep(1)
    if attempts <= 2:  # noqa: PLR2004 - the example's two bad runs
        raise ConnectionError(f"broker not reachable (attempt {attempts})")
    await trio.sleep_forever()


def build(on_event: Callable[[events.Event], object] | None = None) -> orchestra.Conductor:
    """The tree: if the cache fails, the consumer (which is after it) restarts too."""
    return orchestra.Conductor(
        {
            "cache": orchestra.PlayerSpec(cache, restart=orchestra.Restart.ALWAYS),
            "consumer": orchestra.PlayerSpec(
                consumer,
                after=("cache",),  # started once the cache is, stopped before it
                restart=orchestra.Restart.ON_FAILURE,
                backoff=orchestra.Backoff(initial=1, factor=2, maximum=30, jitter=0),
            ),
        },
        name="app",
        strategy="rest_for_one",
        max_restarts=5,
        period=60,
        on_event=on_event,
    )


async def main() -> list[events.Event]:
    """Run the tree for a minute and return what happened."""
    seen: list[events.Event] = []
    conductor = build(seen.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(60)
        print(conductor.status().children["consumer"])
        conductor.stop("the example is over")
    return seen


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    orchestra.run(build())
