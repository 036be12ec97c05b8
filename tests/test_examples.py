"""The documentation's examples are real programs: run them."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
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


async def test_the_graph_example_starts_restarts_and_stops_on_the_graph(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """graph.py prints graph_output.txt at its exact times: start, rest_for_one, stop(within=)."""
    example = load("graph")
    conductor = await example.main()
    assert timeline(capsys.readouterr().out.splitlines()) == timeline(
        (EXAMPLES / "graph_output.txt").read_text(encoding="utf-8").splitlines()
    )
    assert trio.current_time() == 23.5
    assert conductor.stop_budget() == 20  # workers 15 s, then db 5 s; as a line: 32 s
    assert conductor.stop_budget(within=3.5) == 3.5
    nodes = conductor.status().children
    assert {name: (node.after, node.restarts, node.cut_off) for name, node in nodes.items()} == {
        "db": ((), 1, True),  # the deadline left it 0.5 s of its 1 s
        "cache": ((), 0, False),  # nothing it is after failed: left running
        "web": (("db", "cache"), 1, False),
        "workers": (("db",), 1, False),
    }


def timeline(lines: list[str]) -> list[str]:
    """Printed lines in time order; lines of the same instant may come in either order."""
    return sorted(lines, key=lambda line: (float(line.split(" s ")[0]), line))


DEPLOY = EXAMPLES / "deploy"


# Seconds between the stop's deadline (stop_within), when every player still running is
# hard-cancelled at once, and the runner's force exit: the hard phases' cleanups (a worker
# process reaped after SIGKILL, the web server closing its connections). Then seconds between
# the runner's force exit (which prints where each player is stuck) and the outside SIGKILL
# (which prints nothing). docs/operations.rst explains both margins.
HARD_PHASE_MARGIN = 10
FORCE_EXIT_MARGIN = 10


def stated(text: str, name: str) -> int:
    """The number a deployment file's comments give for *name* (``the drain 5``)."""
    comments = " ".join(line.strip().lstrip("#").strip() for line in text.splitlines())
    found = re.search(rf"{name},? (\d+)", comments)
    assert found is not None, f"no {name!r} in the comments of {text!r}"
    return int(found.group(1))


def test_the_deployment_files_agree_with_service_py_on_every_limit_of_the_stop() -> None:
    """The drain + stop budget <= stop_within < force_exit_after < the unit's and Pod's SIGKILL."""
    service = load("service")
    budget = service.build(workers=4).stop_budget()
    assert budget == 25  # the web app's 20 s, then the database's 5 s
    text = (EXAMPLES / "service.py").read_text()
    for option in ("drain=DRAIN", "stop_within=STOP_WITHIN", "force_exit_after=FORCE_EXIT_AFTER"):
        assert option in text
    assert service.DRAIN + budget <= service.STOP_WITHIN
    assert service.STOP_WITHIN + HARD_PHASE_MARGIN <= service.FORCE_EXIT_AFTER
    unit = (DEPLOY / "service.service").read_text()
    assert re.search(r"^Type=notify-reload$", unit, re.MULTILINE)  # SIGHUP reloads service.py
    assert re.search(r"^Environment=.* CONFIG=/etc/service/config\.json$", unit, re.MULTILINE)
    assert re.search(r"^WatchdogSec=\d+$", unit, re.MULTILINE)
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert stop is not None
    assert int(stop.group(1)) >= service.FORCE_EXIT_AFTER + FORCE_EXIT_MARGIN
    deployment = (DEPLOY / "deployment.yaml").read_text()
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", deployment)
    assert grace is not None
    assert int(grace.group(1)) >= service.FORCE_EXIT_AFTER + FORCE_EXIT_MARGIN
    for text, outside, kill in ((unit, "TimeoutStopSec", stop), (deployment, "this period", grace)):
        assert stated(text, "the drain") == service.DRAIN
        assert stated(text, "the stop budget") == budget
        assert stated(text, "stop_within") == service.STOP_WITHIN
        assert stated(text, "force_exit_after") == service.FORCE_EXIT_AFTER
        assert stated(text, outside) == int(kill.group(1))
    assert "readinessProbe:\n            httpGet: {path: /readyz, port: health}" in deployment
    assert '  config.json: |\n    {"workers": 2}\n' in deployment  # the ConfigMap
    assert "- name: CONFIG\n              value: /etc/service/config.json\n" in deployment
    assert "mountPath: /etc/service\n" in deployment
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


def test_the_service_is_ready_for_systemd_reloads_then_drains_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """service.py as systemd runs it: READY=1, /readyz 200; SIGHUP: a third worker; SIGTERM.

    The reload is ``RELOADING=1`` then ``READY=1`` (``Type=notify-reload``): worker-2 starts,
    nothing else restarts. The drain is 5 s of /readyz 503 and ``STATUS=draining``; then each
    worker stops, the database after the web app and the workers, and the program exits 0.
    """
    manager = Manager(str(tmp_path / "notify"))
    config = tmp_path / "config.json"
    config.write_text('{"workers": 2}')
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WEB": "127.0.0.1:0",
        "HEALTH": "127.0.0.1:0",
        "CONFIG": str(config),
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
        assert readyz(health) == (200, "ready\n")
        config.write_text('{"workers": 3}')
        manager.received.clear()
        process.send_signal(signal.SIGHUP)
        manager.wait_for("RELOADING=1")
        manager.wait_for("READY=1")
        reload: list[str] = []
        for line in process.stderr:
            reload.append(line)
            if "player service/workers/worker-2 started" in line:
                break
        assert "INFO trio_orchestra: conductor service updating: updates workers\n" in reload
        assert "INFO trio_orchestra: conductor service/workers updating: adds worker-2\n" in reload
        assert not [line for line in reload if "stopping" in line], reload  # nothing restarted
        assert readyz(health) == (200, "ready\n")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        manager.wait_for("STATUS=draining for 5 s: received SIGTERM")
        assert readyz(health) == (
            503,
            "not ready: service is draining before its stop: received SIGTERM\n",
        )
        manager.wait_for("STOPPING=1")
        assert time.monotonic() - signalled >= 5  # the drain first
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "worker-0 stdout: worker-0: stopped after" in err
        assert "worker-1 stdout: worker-1: stopped after" in err
        assert "worker-2 stdout: worker-2: stopped after" in err
        assert err.index("player service/workers stopped") < err.index("database pool closed")
        assert err.index("player service/web stopped") < err.index("database pool closed")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        manager.socket.close()


def readyz(health: str) -> tuple[int, str]:
    """The status and body of ``/readyz`` at the endpoint *health* (``http://host:port/``)."""
    try:
        with urllib.request.urlopen(health + "readyz", timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_the_liveness_example_finds_the_hung_poller_and_restarts_it(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """liveness.py prints liveness_output.txt at its exact times; the warning says where.

    The poller beats at 0, 1 and 2 and hangs in its third call. The conductor's one check
    runs at 3 (1 s of silence), then no sooner than one liveness later, at 6: 4 s of silence,
    so it is hung there, between 3 and 6 s after its last beat. It is cancelled at once (it
    did not subscribe to a soft phase), fails with PlayerHung, and runs again after 1 s.
    """
    example = load("liveness")
    with caplog.at_level(logging.WARNING, logger="trio_orchestra"):
        conductor = await example.main()
    assert capsys.readouterr().out == (EXAMPLES / "liveness_output.txt").read_text(encoding="utf-8")
    assert trio.current_time() == 11.5
    node = conductor.status().children["poller"]
    assert (node.restarts, node.liveness, node.last_heartbeat) == (1, 3, 11)
    hung = next(r.getMessage() for r in caplog.records if "is hung" in r.getMessage())
    lines = hung.splitlines()
    assert (
        lines[0]
        == "player app/poller is hung: no heartbeat for 4 s (its liveness is 3 s); stuck at:"
    )
    assert re.fullmatch(r"  \S+liveness\.py:\d+ in poller", lines[1])
    assert re.fullmatch(r"  \S+liveness\.py:\d+ in fetch", lines[2])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_liveness_example_as_a_program_logs_the_hang_dumps_its_tree_and_stops(
    tmp_path: Path,
) -> None:
    """``python docs/examples/liveness.py``: the hang in its log, /tasks, SIGUSR1, SIGTERM 0."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and example
            [sys.executable, str(EXAMPLES / "liveness.py")],
            env={**os.environ, "HEALTH": "127.0.0.1:0", "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )

    def logged(pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + 30
        while (found := re.search(pattern, err_path.read_text(), re.MULTILINE)) is None:
            assert time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.05)
        return found

    try:
        health = logged(r"health endpoint on (http://127\.0\.0\.1:\d+/)$").group(1)
        logged(r"player app/poller is hung: no heartbeat for [\d.]+ s \(its liveness is 3 s\)")
        logged(r"player app/poller started$(?s:.*)player app/poller started$")  # again
        with urllib.request.urlopen(health + "tasks", timeout=10) as answer:  # noqa: S310
            tasks = answer.read().decode()
        assert re.match(
            r"app running, ready, stop budget 5 s\n  poller  running   restarts 1 ", tasks
        ), tasks
        assert re.search(r"^    \S+liveness\.py:\d+ in poller$", tasks, re.MULTILINE), tasks
        process.send_signal(signal.SIGUSR1)
        logged(
            r"the tree, on SIGUSR1:\napp running, ready, stop budget 5 s\n"
            r"  poller  running   restarts 1 "
        )
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        assert "app/poller hung: silent for" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


async def test_the_reload_example_updates_at_its_exact_times(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """reload.py prints reload_output.txt: version 2 applied in order, version 3's web put back.

    At 5: old removed (0.5 s), cache added (2 s), web restarted (0.5 s + 0.5 s), db left
    alone. At 10: web's new spec fails at 11; its old one is ready again at 11.5.
    """
    example = load("reload")
    conductor = await example.main()
    assert timeline(capsys.readouterr().out.splitlines()) == timeline(
        (EXAMPLES / "reload_output.txt").read_text(encoding="utf-8").splitlines()
    )
    assert trio.current_time() == 16
    assert conductor.players == example.VERSION_2  # the failed update left the declaration
    nodes = conductor.status().children
    assert {name: node.restarts for name, node in nodes.items()} == {"db": 0, "cache": 0, "web": 0}
