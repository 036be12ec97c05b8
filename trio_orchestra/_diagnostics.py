"""Where a task is stuck: its await frames, as ``file:line in function``.

Why this module: Trio cannot abandon a task that ignores cancellation (shielded cleanup, blocking
sync code), so the next best thing is to say exactly where it is. Used for stragglers and for
the runner's last-resort exit.

A suspended task's frames come from its await chain. A task that is *running* (one that blocks
the event loop in ``time.sleep`` or a busy loop) has no await chain to read: its frames are
read from the Trio thread's live stack instead, handed in as *running*, the innermost frame of
that thread (a signal handler's ``frame``, or ``sys._current_frames()`` from another thread).
"""

from __future__ import annotations

from types import FrameType

import trio

__all__ = ["running_frames", "runs_on", "where_stuck"]

_MACHINERY = ("trio.", "trio_orchestra._conductor", "trio_orchestra._runner")


def _is_machinery(frame: FrameType) -> bool:
    """Trio's own frames and our player wrapper say nothing about where a player is stuck."""
    module = frame.f_globals.get("__name__", "")
    return isinstance(module, str) and module.startswith(_MACHINERY)


def running_frames(task: trio.lowlevel.Task, running: FrameType | None) -> list[FrameType]:
    """The frames of *task*, outermost first, if it is the task running *running*; else []."""
    coro = task.coro
    top = getattr(coro, "cr_frame", None)
    frames: list[FrameType] = []
    frame = running
    while frame is not None and top is not None:
        frames.append(frame)
        if frame is top:
            frames.reverse()
            return frames
        frame = frame.f_back
    return []


def runs_on(task: trio.lowlevel.Task, stack: set[FrameType]) -> bool:
    """Whether *task*, or a task it spawned, is the one running *stack* (a thread's frames)."""
    if getattr(task.coro, "cr_frame", None) in stack:
        return True
    return any(
        runs_on(child, stack) for nursery in task.child_nurseries for child in nursery.child_tasks
    )


def where_stuck(
    task: trio.lowlevel.Task, indent: str = "  ", running: FrameType | None = None
) -> list[str]:
    """List the frames of *task* and of the tasks it has spawned, innermost last.

    *running*, the innermost frame of the Trio thread now, finds a task that is blocking the
    event loop: its live frames are listed instead of its (empty) await chain.
    """
    live = running_frames(task, running)
    frames = [(frame, frame.f_lineno) for frame in live] or list(task.iter_await_frames())
    mine = [(frame, lineno) for frame, lineno in frames if not _is_machinery(frame)]
    lines = [
        f"{indent}{frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}"
        for frame, lineno in (mine or frames[-1:])
    ]
    if live and lines:
        lines[-1] += "  <- running now: it holds the event loop"
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            lines.append(f"{indent}task {child.name}:")
            lines.extend(where_stuck(child, indent + "  ", running))
    return lines
