"""``python -m trio_orchestra``: run a player from the command line, or watch the demo."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    main()
