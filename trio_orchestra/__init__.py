"""Supervised players for Trio: ordered start, two-phase graceful stop, and failures by path.

The public face of the package: everything is implemented in private modules and re-exported
here, with ``__module__`` rewritten so that tracebacks and docs show ``trio_orchestra.X``.
"""

from __future__ import annotations

from . import events as events
from ._asgi import serve_asgi as serve_asgi
from ._block import open_conductor as open_conductor
from ._conductor import Conductor as Conductor
from ._errors import ConductorError as ConductorError
from ._errors import PlayerHung as PlayerHung
from ._errors import StartTimeout as StartTimeout
from ._errors import StopTimeout as StopTimeout
from ._errors import TooManyRestarts as TooManyRestarts
from ._errors import UpdateError as UpdateError
from ._every import every as every
from ._lifecycle import PlayerState as PlayerState
from ._liveness import heartbeat as heartbeat
from ._logging import PathFilter as PathFilter
from ._metrics import TreeCollector as TreeCollector
from ._process import run_process as run_process
from ._runner import play_until_signal as play_until_signal
from ._runner import run as run
from ._spec import PlayerSpec as PlayerSpec
from ._status import ConductorStatistics as ConductorStatistics
from ._status import PlayerStatus as PlayerStatus
from ._stop import StopToken as StopToken
from ._stop import current_stop as current_stop
from ._supervision import Backoff as Backoff
from ._supervision import Restart as Restart
from ._tcp import serve_tcp as serve_tcp

__all__ = [
    "Backoff",
    "Conductor",
    "ConductorError",
    "ConductorStatistics",
    "PathFilter",
    "PlayerHung",
    "PlayerSpec",
    "PlayerState",
    "PlayerStatus",
    "Restart",
    "StartTimeout",
    "StopTimeout",
    "StopToken",
    "TooManyRestarts",
    "TreeCollector",
    "UpdateError",
    "current_stop",
    "events",
    "every",
    "heartbeat",
    "open_conductor",
    "play_until_signal",
    "run",
    "run_process",
    "serve_asgi",
    "serve_tcp",
]


def _fixup_module_metadata() -> None:
    """Make public names say they live in ``trio_orchestra`` (as trio does)."""
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) or callable(obj):
            module = getattr(obj, "__module__", "")
            if module.startswith("trio_orchestra._"):
                obj.__module__ = __name__


_fixup_module_metadata()
del _fixup_module_metadata
