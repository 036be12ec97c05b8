"""Where a task is stuck: its await frames, as ``file:line in function``.

Why this module: Trio cannot abandon a task that ignores cancellation (shielded cleanup, blocking
sync code), so the next best thing is to say exactly where it is. Used for stragglers and for
the runner's last-resort exit.
"""

from __future__ import annotations

from types import FrameType

import trio

__all__ = ["where_stuck"]

_MACHINERY = ("trio.", "trio_orchestra._conductor")


def _is_machinery(frame: FrameType) -> bool:
    """Trio's own frames and our player wrapper say nothing about where a player is stuck."""
    module = frame.f_globals.get("__name__", "")
    return isinstance(module, str) and module.startswith(_MACHINERY)


def where_stuck(task: trio.lowlevel.Task, indent: str = "  ") -> list[str]:
    """List the await frames of *task* and of the tasks it has spawned, innermost last."""
    frames = list(task.iter_await_frames())
    mine = [(frame, lineno) for frame, lineno in frames if not _is_machinery(frame)]
    lines = [
        f"{indent}{frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}"
        for frame, lineno in (mine or frames[-1:])
    ]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            lines.append(f"{indent}task {child.name}:")
            lines.extend(where_stuck(child, indent + "  "))
    return lines
