"""Step 6: the same program with a Conductor and ``orchestra.run``.

Run it with ``python docs/examples/tutorial_6_conductor.py [PORT]`` (default 8000) and stop
it with Ctrl-C or ``kill PID``; press Ctrl-C twice to skip the grace periods.
"""

import sys

import trio

import trio_orchestra as orchestra

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
    """Serve HTTP; on a stop, stop accepting and finish the requests in flight."""
    stop = orchestra.current_stop()  # subscribe to the soft phase of a stop
    async with trio.open_nursery() as requests:  # in-flight requests run here
        with stop.soft_scope():  # cancelled as soon as the stop begins
            await trio.serve_tcp(
                handle, port, host=HOST, handler_nursery=requests, task_status=task_status
            )
        print(f"web: stopped accepting ({stop.reason}), finishing the requests in flight")
    print("web: stopped")


async def worker(name: str) -> None:
    """Work on one job after another; on a stop, finish the job in hand."""
    stop = orchestra.current_stop()
    job = 0
    while not stop.requested:
        job += 1
        print(f"{name}: working on job {job}")
        await trio.sleep(1)
        print(f"{name}: finished job {job}")
    print(f"{name}: stopped ({stop.reason})")


def build(port: int) -> orchestra.Conductor:
    """The program: the worker starts first, the web server once it is ready."""
    return orchestra.Conductor(
        {
            "jobs": orchestra.PlayerSpec(worker, "jobs", grace=5),
            "web": orchestra.PlayerSpec(web_server, port, grace=5),
        },
        name="tutorial",
    )


if __name__ == "__main__":
    orchestra.run(build(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
