"""Step 1: one worker, run by ``trio.run``.

Run it with ``python docs/examples/tutorial_1_worker.py`` and stop it with Ctrl-C.
"""

import trio


async def worker(name: str) -> None:
    """Work on one job after another, forever; each job takes a second."""
    job = 0
    while True:
        job += 1
        print(f"{name}: working on job {job}")
        await trio.sleep(1)  # stands in for the real work
        print(f"{name}: finished job {job}")


async def main() -> None:
    """The whole program: one worker."""
    await worker("jobs")


if __name__ == "__main__":
    trio.run(main)
