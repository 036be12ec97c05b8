"""The command line: ``python -m trio_orchestra run package.module:attr``, ``demo`` and ``top``.

Why this module: a supervised service should not need a ``main()`` of its own. Point the
runner at a conductor (or at a plain async callable, wrapped in a conductor named after it)
and it gets signal handling, exit statuses and logging.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import math
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, cast

from ._checks import MAX_PORT, parse_address
from ._conductor import Conductor
from ._reload import check_factory
from ._runner import StopPlan, as_conductor, run
from ._spec import AsyncFn, PlayerSpec

__all__ = ["main"]

_MISSING = object()
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"{text!r} is not a number of seconds"
        raise argparse.ArgumentTypeError(msg) from None
    if math.isnan(value) or value < 0:
        msg = f"{text!r} must be zero or more seconds"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        msg = f"{text!r} must be more than 0 seconds"
        raise argparse.ArgumentTypeError(msg)
    return value


def _address(text: str) -> str:
    try:
        parse_address(text, "the address")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_orchestra",
        description="Run supervised Trio players with a graceful stop on SIGINT/SIGTERM.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser(
        "run", help="run a Conductor or an async callable until a signal stops it"
    )
    run_cmd.add_argument(
        "target", help="what to run, as package.module:attribute (a Conductor or async callable)"
    )
    run_cmd.add_argument(
        "--grace", type=_seconds, help="the root conductor's default grace, in seconds"
    )
    run_cmd.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=_LEVELS, help="default INFO"
    )
    run_cmd.add_argument(
        "--force-exit-after",
        type=_seconds,
        help="exit with status 70 this many seconds after the first signal (drain included)",
    )
    run_cmd.add_argument(
        "--stop-within",
        type=_seconds,
        metavar="SECONDS",
        help="one deadline for the whole stop (drain included), e.g. Kubernetes' grace period"
        " less a margin",
    )
    run_cmd.add_argument(
        "--drain",
        type=_seconds,
        metavar="SECONDS",
        help="on the first signal, answer /readyz 503 and keep serving this long, then stop",
    )
    run_cmd.add_argument(
        "--reload",
        action="store_true",
        help="the target is a factory returning a Conductor: SIGHUP calls it again and"
        " updates the running tree to it",
    )
    run_cmd.add_argument(
        "--blocked-after",
        type=_positive_seconds,
        metavar="SECONDS",
        help="warn, naming the player and the line, when the event loop is blocked this long",
    )
    run_cmd.add_argument(
        "--health",
        type=_address,
        metavar="HOST:PORT",
        help="serve /livez /readyz /status /metrics and a status page there",
    )
    demo = commands.add_parser("demo", help="run a small supervised tree you can watch")
    demo.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=_LEVELS,
        help="default INFO; DEBUG also logs every job the workers take",
    )
    demo.add_argument(
        "--health",
        type=_address,
        metavar="HOST:PORT",
        default="127.0.0.1:8080",
        help="where the demo serves its health endpoint and page (default 127.0.0.1:8080)",
    )
    demo.add_argument(
        "--web",
        type=_address,
        metavar="HOST:PORT",
        default="127.0.0.1:8000",
        help="where the demo's web app listens (default 127.0.0.1:8000)",
    )
    demo.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the JSON configuration to read, and to reload on SIGHUP (written with the"
        " defaults if missing; default: a fresh file in the temporary directory, removed at exit)",
    )
    top = commands.add_parser(
        "top", help="watch a running program's tree live, from its health endpoint's /status"
    )
    top.add_argument(
        "url",
        nargs="?",
        default="http://127.0.0.1:8080",
        help="the program's health endpoint (default http://127.0.0.1:8080)",
    )
    top.add_argument(
        "--interval",
        type=_positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two looks (default 1)",
    )
    return parser


def _top(parser: argparse.ArgumentParser, url: str, interval: float) -> NoReturn:
    """``top``: check that rich is installed and the URL, then watch until ``q``."""
    if importlib.util.find_spec("rich") is None:
        parser.error("top needs rich, which is not installed; pip install 'trio-orchestra[top]'")
    from . import _top  # noqa: PLC0415 - it imports rich, the optional extra

    try:
        _top.status_url(url)
    except ValueError as exc:
        parser.error(str(exc))
    sys.exit(_top.main(url, interval=interval))


def _load(parser: argparse.ArgumentParser, target: str, *, reload: bool) -> object:
    """The object *target* names: a conductor to run, or (with *reload*) its factory."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        parser.error(f"target {target!r} must look like package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        parser.error(f"cannot import module {module_name!r}: {exc}")
    obj: object = module
    for part in attribute.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            parser.error(f"module {module_name!r} has no attribute {attribute!r}")
    if reload:
        try:
            check_factory(obj)
        except TypeError as exc:
            parser.error(f"{target!r} cannot be reloaded: {exc}")
        return obj
    if not isinstance(obj, (Conductor, PlayerSpec)) and not callable(obj):
        parser.error(f"{target!r} is a {type(obj).__name__}, not a Conductor or async callable")
    try:
        return as_conductor(cast("AsyncFn", obj))  # checked by as_conductor
    except (TypeError, ValueError) as exc:
        parser.error(f"{target!r} cannot be run: {exc}")


def _cannot_listen(address: str) -> str | None:
    """Why *address* cannot be listened on now (a port in use, say), or ``None`` if it can.

    Bound as the listeners will be (every address the host resolves to, ``SO_REUSEADDR``), then
    closed at once: a port taken in between still fails the run, with the library's message.
    """
    host, port = parse_address(address, "the address")
    if port == 0:
        return None  # any free port will do
    try:
        for family, kind, proto, _, where in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            with socket.socket(family, kind, proto) as sock:
                if sys.platform != "win32":  # as trio and _asgi do
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(where)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _check_demo_ports(parser: argparse.ArgumentParser, web: str, health: str) -> None:
    """Exit 1, one line per address, if the demo cannot listen where it was told to."""
    if web == health and parse_address(web, "the address")[1] != 0:
        parser.error(f"--web and --health are both {web}; give them different ports")
    busy = False
    for option, what, address in (
        ("--web", "web app", web),
        ("--health", "health endpoint", health),
    ):
        why = _cannot_listen(address)
        if why is None:
            continue
        busy = True
        host, _, port = address.rpartition(":")
        other = int(port) + 1 if int(port) < MAX_PORT else int(port) - 1
        sys.stderr.write(
            f"trio_orchestra demo: the {what} cannot listen on {address} ({why}); "
            f"move it with {option} HOST:PORT, e.g. {option} {host}:{other}\n"
        )
    if busy:
        sys.exit(1)


def _demo(parser: argparse.ArgumentParser, web: str, health: str, config: Path | None) -> NoReturn:
    """``demo``: its configuration file read (or written), its banner, then its reloadable run."""
    from ._demo import (  # noqa: PLC0415 - only the demo needs them
        BLOCKED_AFTER,
        DRAIN,
        STOP_WITHIN,
        DemoConfig,
        DemoTree,
        banner,
        write_config,
    )

    fresh = config is None
    path = Path(tempfile.gettempdir(), f"trio-orchestra-demo-{os.getpid()}.json")
    path = path if config is None else config
    try:
        if fresh or not path.exists():
            write_config(path)
        DemoConfig.read(path)  # a wrong file is a usage error before anything runs
    except OSError as exc:
        parser.error(f"cannot write the demo's configuration {path}: {exc.strerror or exc}")
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(banner(web, health, path))
    sys.stdout.flush()
    try:
        run(
            # run()'s annotation has no factory form for reload=True: a Conductor's is nearest
            cast("Conductor", DemoTree(web, path)),
            health=health,
            stop_within=STOP_WITHIN,
            drain=DRAIN,
            blocked_after=BLOCKED_AFTER,
            reload=True,
        )
    except ModuleNotFoundError as exc:  # --health without h11: said before anything runs
        parser.error(str(exc))
    finally:
        if fresh:
            path.unlink(missing_ok=True)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Parse *argv* (default ``sys.argv[1:]``) and run; always exits."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "top":
        _top(parser, args.url, args.interval)
    _configure_logging(args.log_level)
    if args.command == "demo":
        _check_demo_ports(parser, args.web, args.health)
        _demo(parser, args.web, args.health, args.config)
    try:  # before the target is imported: nothing of it runs
        StopPlan.checked(args.drain, args.stop_within)
    except ValueError as exc:
        parser.error(str(exc))
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory is importable
    if args.reload and args.grace is not None:
        parser.error("--grace cannot be used with --reload: the factory sets the grace")
    target = _load(parser, args.target, reload=args.reload)
    if args.grace is not None:
        target = as_conductor(cast("Conductor", target), grace=args.grace)
    try:
        run(
            target,  # type: ignore[arg-type] # checked by _load
            force_exit_after=args.force_exit_after,
            health=args.health,
            stop_within=args.stop_within,
            drain=args.drain,
            blocked_after=args.blocked_after,
            reload=args.reload,
        )
    except ModuleNotFoundError as exc:  # --health without h11: said before anything runs
        parser.error(str(exc))
