"""Reload: run(factory, reload=True), SIGHUP in a real process, systemd's notify-reload (s. 12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import trio_orchestra as orchestra
from trio_orchestra._reload import first_conductor

from .test_systemd import Manager, lines

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX signals", allow_module_level=True)

SERVICE = textwrap.dedent(
    """
    import json
    from functools import partial
    from pathlib import Path

    import trio

    import trio_orchestra as orchestra

    CONFIG = Path(__file__).with_name("config.json")


    async def worker(name):
        print(f"{name} begins", flush=True)
        try:
            await trio.sleep_forever()
        finally:
            print(f"{name} ends", flush=True)


    def factory():
        config = json.loads(CONFIG.read_text())  # a broken file fails the reload
        players = {"db": orchestra.PlayerSpec(worker, "db")}
        for i in range(config["workers"]):
            players[f"worker-{i}"] = orchestra.PlayerSpec(worker, f"worker-{i}")
        return orchestra.Conductor(players, name="svc")
    """
)


class Service:
    """``python -m trio_orchestra run service:factory --reload`` in a fresh directory."""

    def __init__(self, tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> None:
        """Write the service and a config of one worker, and start it."""
        (tmp_path / "service.py").write_text(SERVICE)
        self.config = tmp_path / "config.json"
        self.configure(workers=1)
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "trio_orchestra",
                "run",
                "service:factory",
                "--reload",
                *options,
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []

    def configure(self, **config: object) -> None:
        """Write the config file."""
        self.config.write_text(json.dumps(config))

    def wait_out(self, text: str) -> None:
        """Read stdout until a line is *text*."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.out.append(line.rstrip("\n"))
            if line.rstrip("\n") == text:
                return
        msg = f"the service ended without printing {text!r}: {self.out}"
        raise AssertionError(msg)

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit status and stderr."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        self.out.extend(out.splitlines())
        return self.process.returncode, err


@pytest.fixture
def service(tmp_path: Path) -> Iterator[list[Service]]:
    """Services started by the test; killed if left running."""
    started: list[Service] = []
    yield started
    for each in started:
        if each.process.poll() is None:
            each.process.kill()
            each.process.communicate()


def _last_reload(port: int) -> dict[str, object]:
    """The ``last_reload`` of the service's ``/status``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        found: dict[str, dict[str, object]] = json.loads(answer.read())
        return found["last_reload"]


def _free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_sighup_updates_the_running_tree_and_a_bad_config_changes_nothing(
    tmp_path: Path, service: list[Service]
) -> None:
    """A second worker on SIGHUP, db untouched; a broken config: logged, shown, nothing stops."""
    port = _free_port()
    run = Service(tmp_path, "--health", f"127.0.0.1:{port}")
    service.append(run)
    run.wait_out("worker-0 begins")
    run.configure(workers=2)
    run.process.send_signal(signal.SIGHUP)
    run.wait_out("worker-1 begins")
    last = _last_reload(port)
    assert (last["number"], last["ok"], last["why"]) == (1, True, "received SIGHUP")

    run.config.write_text("{not json")
    run.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        last = _last_reload(port)
        if last["number"] == 2:
            break
        time.sleep(0.05)
    assert last["ok"] is False
    assert str(last["error"]).startswith("JSONDecodeError: ")

    run.configure(workers=0)
    run.process.send_signal(signal.SIGHUP)
    run.wait_out("worker-1 ends")
    status, err = run.stop()
    assert status == 0, err
    assert run.out.count("db begins") == 1  # never restarted
    assert "conductor svc updating: adds worker-1" in err
    assert "the reload failed, the program goes on as it was: JSONDecodeError:" in err
    assert "conductor svc updating: removes worker-1, worker-0" in err


def test_systemd_hears_reloading_then_ready(tmp_path: Path, service: list[Service]) -> None:
    """Type=notify-reload: RELOADING=1 with MONOTONIC_USEC, then READY=1, for each reload."""
    manager = Manager(str(tmp_path / "notify"))
    try:
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
        run = Service(tmp_path, env=env)
        service.append(run)
        manager.wait_for("READY=1")
        manager.received.clear()
        run.configure(workers=2)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        run.process.send_signal(signal.SIGHUP)
        manager.wait_for("READY=1")
        sent = lines(manager.received)
        reloading = sent.index("RELOADING=1")
        usec = int(sent[reloading + 1].removeprefix("MONOTONIC_USEC="))
        assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert sent[reloading + 2] == "STATUS=reloading: received SIGHUP"
        ready = sent.index("READY=1")
        assert reloading < ready
        assert sent[ready + 1] == "STATUS=svc running: 3 running"
        status, err = run.stop()
        assert status == 0, err
    finally:
        manager.socket.close()


def test_the_command_line_refuses_a_conductor_for_reload(tmp_path: Path) -> None:
    """--reload needs a factory: one line, exit 2."""
    (tmp_path / "service.py").write_text(SERVICE + "\nconductor = factory()\n")
    (tmp_path / "config.json").write_text('{"workers": 1}')
    result = subprocess.run(
        [sys.executable, "-m", "trio_orchestra", "run", "service:conductor", "--reload"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert (
        "'service:conductor' cannot be reloaded: the runner: reload=True needs a factory, a"
        " plain function that returns a Conductor, not Conductor" in result.stderr
    )


def test_a_factory_is_checked_before_anything_runs() -> None:
    """An async function, a conductor, a factory returning something else: TypeErrors."""

    async def player() -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(TypeError, match=r"needs a factory, .* not .*player$"):
        first_conductor(player)
    with pytest.raises(TypeError, match=r"not Conductor$"):
        first_conductor(orchestra.Conductor())
    with pytest.raises(
        TypeError, match=r"^the reload factory .*<lambda> returned a int, not a Conductor$"
    ):
        first_conductor(lambda: 3)


async def test_a_reload_waits_for_a_group_restart_in_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rest_for_one, flaky in its 5 s backoff: the reload waits for it, then updates."""
    from trio_orchestra._reload import Reloader  # noqa: PLC0415 - the runner's own part
    from trio_orchestra.testing import background  # noqa: PLC0415

    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise OSError("hung up")
        await trio.sleep_forever()

    async def worker() -> None:
        await trio.sleep_forever()

    backoff = orchestra.Backoff(initial=5, maximum=5, jitter=0)
    players: dict[str, orchestra.PlayerSpec] = {
        "flaky": orchestra.PlayerSpec(flaky, restart="on_failure", backoff=backoff)
    }

    def factory() -> orchestra.Conductor:
        return orchestra.Conductor(players, name="app", strategy="rest_for_one")

    conductor = factory()
    reloader = Reloader(factory, conductor)
    async with background(conductor) as run, trio.open_nursery() as nursery:
        nursery.start_soon(reloader.run)
        await trio.sleep(1)  # flaky failed at 0: its group restarts it at 5
        players["worker"] = orchestra.PlayerSpec(worker)
        reloader.request("test")
        with trio.fail_after(10):
            while reloader.last is None:  # noqa: ASYNC110 - the reloader's outcome
                await trio.sleep(0.1)
        assert reloader.last["ok"] is True
        assert 5 <= reloader.last["time"] < 6  # type: ignore[operator]
        assert list(run.conductor.status().children) == ["flaky", "worker"]
        nursery.cancel_scope.cancel()
