"""The documentation's examples are real programs: run them."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import trio
import trio.testing

from trio_orchestra import events

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"


def load(name: str) -> ModuleType:
    """Import docs/examples/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_quickstart_stops_gracefully_on_sigterm() -> None:
    """quickstart.py runs its two players and stops them in order on SIGTERM, exit 0."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "working on emails" in line:
            break
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "web server stopping: received SIGTERM" in out


async def test_the_supervision_example_recovers(autojump_clock: trio.testing.MockClock) -> None:
    """supervision.py: the consumer fails twice, is restarted after 1 s then 2 s, then runs."""
    example = load("supervision")
    seen: list[events.Event] = await example.main()
    restarts = [(e.time, e.delay) for e in seen if isinstance(e, events.Restarting)]
    assert restarts == [(1, 1), (3, 2)]
    assert example.attempts == 3
