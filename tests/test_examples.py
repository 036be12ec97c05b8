"""The documentation's examples are real programs: run them."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import trio
import trio.testing

from trio_orchestra import events

from .test_systemd import Manager

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


DEPLOY = EXAMPLES / "deploy"


def test_the_deployment_files_outlast_the_stop_budget() -> None:
    """The unit file and the Deployment give the service more than its stop budget."""
    service = load("service")
    budget = service.build(workers=4).stop_budget()
    assert budget == 35
    unit = (DEPLOY / "service.service").read_text()
    assert "Type=notify" in unit
    assert re.search(r"^WatchdogSec=\d+$", unit, re.MULTILINE)
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert stop is not None
    assert int(stop.group(1)) > budget
    deployment = (DEPLOY / "deployment.yaml").read_text()
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", deployment)
    assert grace is not None
    assert int(grace.group(1)) > budget
    assert "readinessProbe:\n            httpGet: {path: /readyz, port: health}" in deployment
    assert "livenessProbe:\n            httpGet: {path: /livez, port: health}" in deployment


def test_the_service_is_ready_for_systemd_and_stops_its_workers_on_sigterm(
    tmp_path: Path,
) -> None:
    """service.py as systemd runs it: READY=1, /readyz 200, then SIGTERM reaches each worker."""
    manager = Manager(str(tmp_path / "notify"))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WEB": "127.0.0.1:0",
        "HEALTH": "127.0.0.1:0",
        "WORKERS": "2",
    }
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / "service.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        manager.wait_for("READY=1")
        assert process.stderr is not None
        health = ""
        for line in process.stderr:
            if "health endpoint on " in line:
                health = line.split("health endpoint on ")[1].strip()
                break
        with urllib.request.urlopen(health + "readyz", timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "worker-0 stdout: worker-0: stopped after" in err
        assert "worker-1 stdout: worker-1: stopped after" in err
        manager.wait_for("STOPPING=1")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        manager.socket.close()
