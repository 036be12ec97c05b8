"""``python -m trio_orchestra demo``: a small real tree to watch and stop with Ctrl-C.

The tree::

    demo
    ├── echo        a TCP echo server on 127.0.0.1 (soft stop: stop accepting, finish clients)
    ├── jobs        a nested conductor
    │   ├── queue-feeder    puts a job on a channel every half second
    │   ├── worker-1        takes jobs; on a soft stop, finishes the job in hand
    │   └── worker-2
    └── heartbeat   logs the uptime every few seconds (a plain player: cancelled at once)

Press Ctrl-C once for a graceful stop (watch the players stop in reverse order), twice to force.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from ._conductor import Conductor
from ._spec import PlayerSpec
from ._stop import current_stop

__all__ = ["demo_conductor"]

logger = logging.getLogger("trio_orchestra.demo")


async def echo_server(*, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
    """Echo lines back to each client; a soft stop closes the listener, clients finish."""
    stop = current_stop()

    async def echo(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as clients:  # connections live here, past the soft stop
        with stop.soft_scope():  # the accept loop ends at the soft stop
            async with trio.open_nursery() as server:
                serve = partial(trio.serve_tcp, echo, 0, host="127.0.0.1", handler_nursery=clients)
                listeners = await server.start(serve)
                port = listeners[0].socket.getsockname()[1]
                logger.info("echo server on 127.0.0.1:%d (try: nc 127.0.0.1 %d)", port, port)
                task_status.started(listeners)


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


async def heartbeat() -> None:
    """Log the uptime every five seconds until cancelled."""
    start = trio.current_time()
    while True:
        await trio.sleep(5)
        logger.info("up for %.0f s", trio.current_time() - start)


def demo_conductor() -> Conductor:
    """Build the demo's tree."""
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
    return Conductor({"echo": echo_server, "jobs": jobs, "heartbeat": heartbeat}, name="demo")
