"""Development sessions: ``python3 -m pip install nox && python3 -m nox -s SESSION``.

``nox -l`` lists the sessions; the ones marked ``default=False`` only run when named.
The Python versions to test come from the classifiers in ``pyproject.toml`` and the tools from
its ``[dependency-groups]``, so a new Python or tool version is a change to that file only.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
# Plain venv: nothing to install beyond nox itself. With CI set in the environment, nox fails
# on a missing interpreter instead of skipping it (its default), which CI relies on.
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
# The same test as nox's: with CI set (to anything), a missing interpreter fails its session.
CI = "CI" in os.environ


@functools.cache
def _found(version: str) -> bool:
    """Whether ``pythonX.Y`` runs here (pyenv's shim of a version not selected does not)."""
    executable = shutil.which(f"python{version}")
    if executable is None:
        return False
    probe = subprocess.run(  # noqa: S603 - an interpreter found on PATH, asked to do nothing
        [executable, "-c", ""], capture_output=True, check=False
    )
    return probe.returncode == 0


def _pinned(version: str) -> list[str] | None:
    """*version* for a session pinned to it; ``None`` (the Python running nox) if it is missing.

    nox would skip the session, exit 0 and say so in one line that is easy to miss. On CI the
    pinned version is always asked for, so a missing one fails the session as CI expects. A
    list, so that the session is ``docs-3.12`` with a venv of its own: nox reuses a venv
    without looking at its Python, and would otherwise keep running the fallback's.
    """
    return [version] if CI or _found(version) else None


def _fallback_note(session: nox.Session, version: str) -> None:
    """Say on which Python a session pinned to *version* runs, when it is not that one."""
    if session.python is None:
        session.warn(
            f"python{version} was not found: running on this Python"
            f" ({platform.python_version()}) instead; CI runs this session on {version}."
        )


# Pinned sessions fall back to the Python running nox when their version is missing (not on
# CI), except bench_peers, which cannot run without its version and fails saying so.
TYPECHECK_PYTHON = "3.11"  # the checkers target 3.10 (pyproject.toml), whatever runs them
DOCS_PYTHON = "3.12"
BENCH_PYTHON = "3.11"  # the Performance page's numbers were measured on it
PEERS_PYTHON = "3.13"  # triotp requires it
PEERS_FOUND = CI or _found(PEERS_PYTHON)


def _install(session: nox.Session, *groups: str) -> None:
    """Install the package (not editable, as users get it) and the dependency groups."""
    session.install(".", *nox.project.dependency_groups(PYPROJECT, *groups))
    # A reused venv already has this version: reinstall so that it runs the current code.
    session.install("--no-deps", "--force-reinstall", ".")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite with pytest; extra arguments go to pytest."""
    _install(session, "tests")
    session.run("pytest", *session.posargs)


@nox.session(python=_pinned(TYPECHECK_PYTHON), default=False)
def hypercorn_floor(session: nox.Session) -> None:
    """Run the serve_asgi tests on the oldest hypercorn the ``asgi`` extra allows.

    serve_asgi serves connections with hypercorn's internal connection class (see
    ``trio_orchestra/_hypercorn.py``): this checks that the floor still fits it.
    """
    _fallback_note(session, TYPECHECK_PYTHON)
    _install(session, "tests")
    session.install("hypercorn==0.17.0")
    session.run("pytest", "tests/test_asgi.py", "tests/test_handoff.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code with ruff: lint rules and formatting."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=_pinned(TYPECHECK_PYTHON))
def typecheck(session: nox.Session) -> None:
    """Type-check with mypy and pyright (both strict) and verify the public types' completeness."""
    _fallback_note(session, TYPECHECK_PYTHON)
    _install(session, "typecheck")
    session.run("mypy")
    python = Path(session.bin) / "python"
    session.run("pyright", "--pythonpath", str(python))
    session.run(
        "pyright",
        "--pythonpath",
        str(python),
        "--verifytypes",
        "trio_orchestra",
        "--ignoreexternal",
    )


@nox.session(python=_pinned(DOCS_PYTHON))
def docs(session: nox.Session) -> None:
    """Build the HTML documentation; any warning, including a broken reference, fails."""
    _fallback_note(session, DOCS_PYTHON)
    _install(session, "docs")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-n",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


# The demo runs on the Python that runs nox, so the README's command works on any machine.
@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """Run the demo supervision tree; stop it with Ctrl-C (twice to skip the grace periods)."""
    session.install(".[asgi,health]")
    # Ctrl-C reaches the demo directly from the terminal: let it stop at its own pace instead
    # of nox's default of SIGTERM after 0.3 s (which the demo would take as a second signal).
    session.run("python", "-m", "trio_orchestra", "demo", *session.posargs, interrupt_timeout=None)


@nox.session(default=False)
def top(session: nox.Session) -> None:
    """Watch a running program's tree live (default: the demo's); ``-- HOST:PORT`` for another."""
    session.install(".[top]")
    # q or Ctrl-C ends top itself: nox must not signal it on top of that.
    session.run("python", "-m", "trio_orchestra", "top", *session.posargs, interrupt_timeout=None)


@nox.session(python=_pinned(BENCH_PYTHON), default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks against bare Trio (``-- --quick`` for the smoke run CI does)."""
    _fallback_note(session, BENCH_PYTHON)
    session.install(".", "anyio", "matplotlib")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)


# Without Python 3.13 (and not on CI), no venv: the session only fails, saying why.
@nox.session(
    python=[PEERS_PYTHON] if PEERS_FOUND else None,
    venv_backend=None if PEERS_FOUND else "none",
    default=False,
)
def bench_peers(session: nox.Session) -> None:
    """Run triotp's supervisor beside ours and bare Trio (triotp needs Python 3.13)."""
    if not PEERS_FOUND:
        session.error(
            f"bench_peers needs Python {PEERS_PYTHON} (triotp requires it) and"
            f" python{PEERS_PYTHON} was not found: install it (pyenv install {PEERS_PYTHON},"
            " or your system's package) and run the session again."
        )
    session.install(".", "triotp>=0.3")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("python", "benchmarks/peers.py", *session.posargs)


@nox.session(python=_pinned(TYPECHECK_PYTHON), default=False)
def fuzz(session: nox.Session) -> None:
    """Run the fuzzer with 3000 fresh examples and the soak with 300 000 restarts."""
    _fallback_note(session, TYPECHECK_PYTHON)
    _install(session, "tests")
    session.run(
        "pytest",
        "tests/test_fuzz.py",
        "tests/test_soak.py",
        # 15 times the CI's work: the hang guard of 60 s per test (pyproject) would cut it.
        "--timeout=900",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "fuzz", "TRIO_ORCHESTRA_SOAK_RESTARTS": "300000"},
    )
