"""Development sessions: ``python3 -m pip install nox && python3 -m nox -s SESSION``.

``nox -l`` lists the sessions; the ones marked ``default=False`` only run when named.
The Python versions to test come from the classifiers in ``pyproject.toml`` and the tools from
its ``[dependency-groups]``, so a new Python or tool version is a change to that file only.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
# Plain venv: nothing to install beyond nox itself. With CI set in the environment, nox fails
# on a missing interpreter instead of skipping it (its default), which CI relies on.
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
TYPECHECK_PYTHON = "3.11"
DOCS_PYTHON = "3.12"


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


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code with ruff: lint rules and formatting."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=TYPECHECK_PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check with mypy and pyright (both strict) and verify the public types' completeness."""
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


@nox.session(python=DOCS_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the HTML documentation; any warning, including a broken reference, fails."""
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


@nox.session(python=TYPECHECK_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks against bare Trio (``-- --quick`` for the smoke run CI does)."""
    session.install(".", "anyio", "matplotlib")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python="3.13", default=False)
def bench_peers(session: nox.Session) -> None:
    """Run triotp's supervisor beside ours and bare Trio (triotp needs Python 3.13)."""
    session.install(".", "triotp>=0.3")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("python", "benchmarks/peers.py", *session.posargs)


@nox.session(python=TYPECHECK_PYTHON, default=False)
def fuzz(session: nox.Session) -> None:
    """Run the fuzzer with 3000 fresh examples and the soak with 300 000 restarts."""
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
