"""Step 4: several workers in one nursery, and what one failure does to them.

Run it with ``python docs/examples/tutorial_4_naive.py [PORT]`` (default 8000): after 2.5
seconds the ``reports`` worker fails, and the whole program dies with a traceback.
"""

import signal
import sys

import trio

HOST = "127.0.0.1"
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"


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
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP on 127.0.0.1:*port* until cancelled; ready once it listens."""
    await trio.serve_tcp(handle, port, host=HOST, task_status=task_status)


async def worker(name: str) -> None:
    """Work on one job after another, forever; say so when a job is cut short."""
    job = 0
    while True:
        job += 1
        print(f"{name}: working on job {job}")
        try:
            await trio.sleep(1)
        except trio.Cancelled:
            print(f"{name}: cancelled in the middle of job {job}")
            raise
        print(f"{name}: finished job {job}")


async def reports() -> None:
    """A worker with a bug: it fails after 2.5 seconds."""
    await trio.sleep(2.5)
    raise ConnectionError("reports: the database went away")


async def main(port: int) -> None:
    """Run everything until a signal, or until anything fails."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker, "emails")
            nursery.start_soon(worker, "thumbnails")
            nursery.start_soon(reports)
            await nursery.start(web_server, port)
            async for signum in signals:
                print(f"received {signal.Signals(signum).name}: cancelling everything")
                nursery.cancel_scope.cancel()
                break
    print("bye")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
