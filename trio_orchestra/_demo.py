"""``python -m trio_orchestra demo``: a real tree to watch, probe and stop with Ctrl-C.

The tree::

    demo
    ├── web         an ASGI app served by hypercorn (soft stop: finish requests in flight)
    ├── jobs        a nested conductor
    │   ├── queue-feeder    puts a job on a channel every half second
    │   ├── worker-1        takes jobs; on a soft stop, finishes the job in hand
    │   └── worker-2
    ├── flaky       fails now and then; restarted with backoff (Restart.ON_FAILURE)
    ├── sidecar     a child process: SIGTERM on the soft stop, SIGKILL if it must
    └── view        every few seconds, prints the tree (a periodic player, ``every``)

The runner serves the health endpoint next to it: ``/`` is a page of the tree, ``/readyz`` turns
503 while ``flaky`` waits in backoff. Press Ctrl-C once for a graceful stop (watch the players
stop in reverse order), twice to force.
"""

from __future__ import annotations

import logging
import random
import sys
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._asgi import serve_asgi
from ._conductor import Conductor
from ._every import every
from ._process import run_process
from ._report import tree_text
from ._spec import PlayerSpec
from ._stop import current_stop
from ._supervision import Backoff, Restart

__all__ = ["demo_conductor"]

logger = logging.getLogger("trio_orchestra.demo")

_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


async def hello(scope: dict[str, Any], receive: _Receive, send: _Send) -> None:
    """A tiny ASGI app: every request gets a line of text after a short think."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await trio.sleep(0.2)
    body = f"hello from trio-orchestra: you asked for {scope['path']}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def feeder(send: trio.MemorySendChannel[int]) -> None:
    """Put a numbered job on the queue every half second."""
    number = 0
    async with send:
        while True:
            number += 1
            await send.send(number)
            await trio.sleep(0.5)


async def worker(name: str, receive: trio.MemoryReceiveChannel[int]) -> None:
    """Take jobs one by one; on a soft stop, finish the job in hand and return."""
    stop = current_stop()
    while not stop.requested:
        job: int | None = None
        with stop.soft_scope():
            job = await receive.receive()
        if job is None:
            return  # stopped while waiting for a job
        logger.info("%s working on job %d", name, job)
        await trio.sleep(1.5)  # the work: a soft stop lets it finish
        logger.info("%s finished job %d", name, job)


async def flaky(chance: random.Random) -> None:
    """Run for a few seconds, then lose an imaginary connection."""
    await trio.sleep(chance.uniform(4, 10))
    raise ConnectionResetError("the imaginary upstream hung up")


SIDECAR = textwrap.dedent(
    """
    import signal, sys, time

    def on_term(signum, frame):
        print("sidecar: got SIGTERM, cleaning up", flush=True)
        time.sleep(0.5)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    tick = 0
    while True:
        tick += 1
        print(f"sidecar: tick {tick}", flush=True)
        time.sleep(3)
    """
)


def view(conductor: Callable[[], Conductor]) -> Callable[[], Awaitable[None]]:
    """A player that prints the tree on stdout every five seconds."""

    async def show() -> None:
        sys.stdout.write(tree_text(conductor().status(), trio.current_time()) + "\n")
        sys.stdout.flush()

    return every(5, show)


def demo_conductor(web: str = "127.0.0.1:8000") -> Conductor:
    """Build the demo's tree; the web app listens on *web*."""
    send, receive = trio.open_memory_channel[int](10)
    jobs = Conductor(
        {
            "queue-feeder": PlayerSpec(feeder, send),
            "worker-1": PlayerSpec(worker, "worker-1", receive),
            "worker-2": PlayerSpec(worker, "worker-2", receive.clone()),
        },
        name="jobs",
        grace=3,
    )
    backoff = Backoff(initial=1, maximum=8, reset_after=30)
    root: list[Conductor] = []
    conductor = Conductor(
        {
            "web": PlayerSpec(serve_asgi(hello, bind=web), grace=5),
            "jobs": jobs,
            "flaky": PlayerSpec(
                flaky,
                random.Random(),  # noqa: S311 - when a demo player fails, not cryptography
                restart=Restart.ON_FAILURE,
                backoff=backoff,
            ),
            "sidecar": PlayerSpec(
                run_process([sys.executable, "-u", "-c", SIDECAR]),
                restart=Restart.ON_FAILURE,
                grace=3,
            ),
            "view": view(lambda: root[0]),
        },
        name="demo",
        max_restarts=10,
    )
    root.append(conductor)
    return conductor
