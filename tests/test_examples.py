"""The documentation's examples are real programs: run them."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
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


# Seconds between the runner's force exit (which prints where each player is stuck) and the
# outside SIGKILL (which prints nothing): docs/operations.rst explains the margin.
FORCE_EXIT_MARGIN = 10


def test_the_deployment_files_outlast_the_runners_force_exit() -> None:
    """Stop budget < service.py's force_exit_after < the unit's and the Deployment's SIGKILL."""
    service = load("service")
    budget = service.build(workers=4).stop_budget()
    assert budget == 35
    force = re.search(r"force_exit_after=(\d+)", (EXAMPLES / "service.py").read_text())
    assert force is not None
    force_exit_after = int(force.group(1))
    assert force_exit_after > budget
    unit = (DEPLOY / "service.service").read_text()
    assert "Type=notify" in unit
    assert re.search(r"^WatchdogSec=\d+$", unit, re.MULTILINE)
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert stop is not None
    assert int(stop.group(1)) >= force_exit_after + FORCE_EXIT_MARGIN
    deployment = (DEPLOY / "deployment.yaml").read_text()
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", deployment)
    assert grace is not None
    assert int(grace.group(1)) >= force_exit_after + FORCE_EXIT_MARGIN
    assert "readinessProbe:\n            httpGet: {path: /readyz, port: health}" in deployment
    assert "livenessProbe:\n            httpGet: {path: /livez, port: health}" in deployment


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_rates_the_unit_ok_or_better() -> None:
    """`systemd-analyze security --offline=yes` rates the example unit OK, SAFE or PERFECT."""
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(  # noqa: S603 - systemd's own tool on our own unit file
        [
            SYSTEMD_ANALYZE,
            "security",
            "--offline=yes",
            "--no-pager",
            str(DEPLOY / "service.service"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
        timeout=60,
    )
    if result.returncode != 0 and "unrecognized option" in result.stderr:
        pytest.skip(f"systemd-analyze has no offline mode (systemd < 250): {result.stderr}")
    assert result.returncode == 0, result.stderr
    overall = re.search(
        r"Overall exposure level for service\.service: (\d+\.\d) (\w+)", result.stdout
    )
    assert overall is not None, result.stdout
    assert overall.group(2) in {"OK", "SAFE", "PERFECT"}, result.stdout
    assert float(overall.group(1)) < 5.0, result.stdout


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
