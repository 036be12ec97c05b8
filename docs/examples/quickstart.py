"""A two-player program: ``python docs/examples/quickstart.py``, stop it with Ctrl-C."""

import trio

import trio_orchestra as orchestra


async def web_server(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until a stop is requested, then finish in-flight work within the grace period."""
    stop = orchestra.current_stop()  # subscribe to the soft phase of a stop
    task_status.started()  # ready: the next player may start
    with stop.soft_scope():  # cancelled as soon as a stop is requested
        await trio.sleep_forever()  # e.g. an accept loop
    # Soft phase: finish in-flight work before stop.deadline, then return.
    print("web server stopping:", stop.reason)


async def worker(queue_name: str) -> None:
    """Work forever; not subscribed, so a stop cancels it at once."""
    while True:
        print("working on", queue_name)
        await trio.sleep(1)


conductor = orchestra.Conductor(
    {
        "web": web_server,
        "jobs": orchestra.PlayerSpec(worker, "emails", grace=30),
    },
    name="app",
    grace=5.0,
)

if __name__ == "__main__":
    # Starts "web", then "jobs"; Ctrl-C or SIGTERM stops "jobs", then "web", gracefully.
    orchestra.run(conductor)
