"""Step 5: ordered start, a soft stop and deadlines, by hand, with Trio's own tools.

Run it with ``python docs/examples/tutorial_5_by_hand.py [PORT]`` (default 8000) and stop it
with Ctrl-C or ``kill PID``: the web server stops accepting and answers the requests in
flight, then the worker finishes the job in hand; each gets ``GRACE`` seconds at most.
"""

import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

HOST = "127.0.0.1"
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"
GRACE = 5.0  # seconds each part has to stop on its own before it is cancelled


async def handle(stream: trio.SocketStream) -> None:
    """Answer one HTTP request, whatever it asks for, with ``hello``."""
    request = b""
    while b"\r\n\r\n" not in request:
        data = await stream.receive_some()
        if not data:
            return
        request += data
    print("web: answering", request.split(b"\r\n")[0].decode("ascii", "replace"))
    await trio.sleep(0.5)
    await stream.send_all(RESPONSE)


async def web_server(
    port: int,
    stopping: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP; once *stopping* is set, stop accepting and finish the requests in flight."""
    async with trio.open_nursery() as requests:  # in-flight requests run here
        async with trio.open_nursery() as accepting:
            await accepting.start(
                partial(trio.serve_tcp, handle, port, host=HOST, handler_nursery=requests)
            )
            task_status.started()
            await stopping.wait()
            accepting.cancel_scope.cancel()  # stop accepting: this closes the listeners
        print("web: stopped accepting, finishing the requests in flight")
    print("web: stopped")


async def worker(
    name: str,
    stopping: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Work on one job after another; once *stopping* is set, finish the job in hand."""
    task_status.started()
    job = 0
    while not stopping.is_set():
        job += 1
        print(f"{name}: working on job {job}")
        await trio.sleep(1)
        print(f"{name}: finished job {job}")
    print(f"{name}: stopped")


class Part:
    """One running part of the program, and the three handles we need to stop it."""

    def __init__(self, name: str) -> None:
        """A part that has not started yet."""
        self.name = name
        self.stopping = trio.Event()  # the soft phase: "please finish and return"
        self.scope = trio.CancelScope()  # the hard phase: cancelled at its deadline
        self.done = trio.Event()  # set when it has returned, whatever the way


class Program:
    """What the parts share: a request to stop, and the failures to report at the end."""

    def __init__(self) -> None:
        """No stop requested and no failure yet."""
        self.stop = trio.Event()
        self.failures: list[Exception] = []


async def run_part(
    program: Program,
    part: Part,
    fn: Callable[..., Awaitable[None]],
    *args: object,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one part: a failure is kept for the end and stops the whole program in order."""
    try:
        with part.scope:
            await fn(*args, part.stopping, task_status=task_status)
    except Exception as exc:  # noqa: BLE001 - every failure is kept and raised at the end
        print(f"{part.name}: failed: {exc!r}")
        program.failures.append(exc)
        program.stop.set()
    finally:
        part.done.set()


async def stop_on_signal(signals: AsyncIterator[int], program: Program) -> None:
    """Turn the first SIGINT or SIGTERM into a stop request."""
    async for signum in signals:
        print(f"received {signal.Signals(signum).name}")
        program.stop.set()
        return


async def main(port: int) -> None:
    """Start the parts in order, each ready before the next; stop them in reverse order."""
    program = Program()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal, signals, program)
            parts: list[Part] = []
            for part, fn, arg in [
                (Part("jobs"), worker, "jobs"),
                (Part("web"), web_server, port),
            ]:
                await nursery.start(run_part, program, part, fn, arg)
                parts.append(part)
            await program.stop.wait()
            for part in reversed(parts):
                part.stopping.set()  # soft phase...
                part.scope.deadline = trio.current_time() + GRACE  # ...then hard phase
                await part.done.wait()
            nursery.cancel_scope.cancel()  # the signal watcher
    if program.failures:
        raise ExceptionGroup("the program failed", program.failures)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
