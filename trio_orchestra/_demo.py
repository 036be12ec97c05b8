"""``python -m trio_orchestra demo``: a real tree to watch, probe and stop with Ctrl-C.

Why this module: a newcomer should see supervision work, and done right: every player here
subscribes to its stop, finishes what it has in hand and returns, so one Ctrl-C is a clean stop
(exit 0). The terminal gets a short banner and the events; the tree is on the health page.

The tree::

    demo
    ├── web         an ASGI app served by hypercorn (soft stop: finish requests in flight)
    ├── jobs        a nested conductor whose players hear the stop at once (stop_order="parallel")
    │   ├── queue-feeder    puts a job on the queue every second
    │   ├── worker-1        takes jobs; once stopped, finishes the one in hand, takes no more
    │   ├── worker-2
    │   └── report          every 30 s, logs how many jobs are done (a periodic player, ``every``)
    ├── sidecar     a child process: SIGTERM on the soft stop, SIGKILL if it must
    └── flaky       fails now and then, restarted with backoff; declared last, so stopped first

The runner serves the health endpoint next to it: ``/`` is a page of the tree, ``/readyz`` turns
503 while ``flaky`` waits in backoff. Press Ctrl-C once for a graceful stop (watch the players
stop in reverse order), twice to force.
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._asgi import serve_asgi
from ._checks import parse_address
from ._conductor import Conductor
from ._every import every
from ._process import run_process
from ._spec import PlayerSpec
from ._stop import current_stop
from ._supervision import Backoff, Restart

__all__ = ["banner", "demo_conductor", "jobs_conductor"]

logger = logging.getLogger("trio_orchestra.demo")

_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Seconds a job takes; within the pool's grace, so a job in hand is always finished.
JOB_SECONDS = 1.5


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


class _Tally:
    """The jobs finished so far, counted by the workers and told by the report."""

    def __init__(self) -> None:
        self.done = 0


async def feeder(send: trio.MemorySendChannel[int]) -> None:
    """Put a numbered job on the queue every second; on a stop, put no more and return."""
    stop = current_stop()
    with stop.soft_scope():
        for number in itertools.count(1):
            await send.send(number)
            await trio.sleep(1)


async def worker(name: str, receive: trio.MemoryReceiveChannel[int], tally: _Tally) -> None:
    """Take jobs one by one; once stopped, take no new job, finish the one in hand, return."""
    stop = current_stop()
    while True:
        job: int | None = None
        with stop.soft_scope():  # a stop while waiting for a job ends the wait, empty-handed
            job = await receive.receive()
        if job is None:
            return
        logger.debug("%s working on job %d", name, job)
        await trio.sleep(JOB_SECONDS)  # the work: the soft phase lets it finish
        tally.done += 1
        if stop.requested:  # checked before taking the next job: none is taken after the stop
            logger.info("%s finished job %d, in hand when the stop came", name, job)
            return
        logger.debug("%s finished job %d", name, job)


async def report(tally: _Tally, receive: trio.MemoryReceiveChannel[int]) -> None:
    """Log one line: the jobs done so far and those waiting in the queue."""
    waiting = receive.statistics().current_buffer_used
    logger.info("%d jobs done so far, %d waiting in the queue", tally.done, waiting)
    await trio.lowlevel.checkpoint()


async def flaky(chance: random.Random) -> None:
    """Run for a few seconds, then lose an imaginary connection; on a stop, return at once."""
    stop = current_stop()
    with stop.soft_scope():  # a stop hangs up cleanly: no failure while the tree stops
        await trio.sleep(chance.uniform(5, 15))
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
        time.sleep(10)
    """
)


def jobs_conductor() -> Conductor:
    """Build the demo's pool of job workers, a conductor named ``jobs``.

    Its players stop all at once (``stop_order="parallel"``): workers are peers, and one by
    one, a worker would go on taking jobs while the one before it finishes.
    """
    send, receive = trio.open_memory_channel[int](10)
    tally = _Tally()
    return Conductor(
        {
            "queue-feeder": PlayerSpec(feeder, send),
            "worker-1": PlayerSpec(worker, "worker-1", receive, tally),
            "worker-2": PlayerSpec(worker, "worker-2", receive.clone(), tally),
            "report": every(30, report, tally, receive),
        },
        name="jobs",
        grace=2 * JOB_SECONDS,
        stop_order="parallel",
    )


def demo_conductor(web: str = "127.0.0.1:8000") -> Conductor:
    """Build the demo's tree; the web app listens on *web*."""
    return Conductor(
        {
            "web": PlayerSpec(serve_asgi(hello, bind=web), grace=5),
            "jobs": jobs_conductor(),
            "sidecar": PlayerSpec(
                run_process([sys.executable, "-u", "-c", SIDECAR]),
                restart=Restart.ON_FAILURE,
                grace=3,
            ),
            # Declared last, so stopped first: its token is set in the very call that begins
            # the tree's stop, and it cannot fail while the others are still stopping.
            "flaky": PlayerSpec(
                flaky,
                random.Random(),  # noqa: S311 - when a demo player fails, not cryptography
                restart=Restart.ON_FAILURE,
                backoff=Backoff(initial=1, maximum=8, reset_after=30),
            ),
        },
        name="demo",
        max_restarts=10,
    )


_BANNER = """\
trio-orchestra demo: web, jobs, sidecar and flaky, supervised by the conductor 'demo'.
  health page  {page}  the tree; /status (JSON), /readyz (503 while flaky
               waits in backoff), /metrics (Prometheus)
  web app      {web}
  live view    `python -m trio_orchestra top`, in a second terminal (coming later)
Ctrl-C once for a graceful stop, players in reverse order; twice to skip the grace periods.
"""


def _url(address: str) -> str:
    host, port = parse_address(address, "the address")
    if port:
        return f"http://{address}/"
    where = f"[{host}]" if ":" in host else host
    return f"http://{where}:PORT/ (port 0: the log says which)"


def banner(web: str, health: str) -> str:
    """The few lines the demo prints first: where to look, and how to stop it."""
    return _BANNER.format(page=_url(health), web=_url(web))
