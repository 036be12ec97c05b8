"""Lifecycle events delivered to a conductor's ``on_event`` hook.

Example::

    from trio_orchestra import events


    def on_event(event: events.Event) -> None:
        if isinstance(event, events.Restarting):
            print(f"{event.path} restarts in {event.delay:.1f} s")


    conductor = orchestra.Conductor({...}, on_event=on_event)
"""

from __future__ import annotations

from ._events import Draining as Draining
from ._events import Event as Event
from ._events import Failed as Failed
from ._events import Finished as Finished
from ._events import Hung as Hung
from ._events import Ready as Ready
from ._events import Restarting as Restarting
from ._events import RestartLimitExceeded as RestartLimitExceeded
from ._events import Started as Started
from ._events import Stopped as Stopped
from ._events import Stopping as Stopping
from ._events import Straggling as Straggling
from ._events import Updated as Updated
from ._events import UpdateFailed as UpdateFailed
from ._events import Updating as Updating

__all__ = [
    "Draining",
    "Event",
    "Failed",
    "Finished",
    "Hung",
    "Ready",
    "RestartLimitExceeded",
    "Restarting",
    "Started",
    "Stopped",
    "Stopping",
    "Straggling",
    "UpdateFailed",
    "Updated",
    "Updating",
]


def _fixup_module_metadata() -> None:
    for name in __all__:
        globals()[name].__module__ = __name__


_fixup_module_metadata()
del _fixup_module_metadata
