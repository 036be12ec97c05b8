"""A worker process, as ``service.py`` runs one per core: jobs until SIGTERM, then a clean exit.

It knows nothing of trio_orchestra: any program that exits on SIGTERM can be supervised.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

stopping = False


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Finish the job in hand, then exit: the supervisor's soft phase."""
    del signum, frame
    global stopping  # noqa: PLW0603 - a signal handler's only way out
    stopping = True


def main() -> int:
    """Work until asked to stop."""
    name = sys.argv[1] if len(sys.argv) > 1 else "worker"
    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"{name}: ready", flush=True)
    job = 0
    while not stopping:
        job += 1
        time.sleep(0.2)  # the job
    print(f"{name}: stopped after {job} jobs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
