"""The lifecycle table: the only legal state changes (the one place that owns them)."""

from __future__ import annotations

import pytest

from trio_orchestra import PlayerState
from trio_orchestra._lifecycle import TRANSITIONS, move


class Player:
    """The least a stateful player needs."""

    def __init__(self, state: PlayerState) -> None:
        """Start in *state*."""
        self.state = state

    @property
    def path(self) -> str:
        """A path for messages."""
        return "app/p"


@pytest.mark.parametrize("start", list(PlayerState))
@pytest.mark.parametrize("end", list(PlayerState))
def test_move_follows_the_table(start: PlayerState, end: PlayerState) -> None:
    """A legal move changes the state; an illegal one raises and leaves it unchanged."""
    player = Player(start)
    if end in TRANSITIONS[start]:
        move(player, end)
        assert player.state is end
    else:
        with pytest.raises(
            RuntimeError,
            match=rf"^player 'app/p' cannot go from {start.name} to {end.name}; this is a bug",
        ):
            move(player, end)
        assert player.state is start


def test_every_state_can_end() -> None:
    """From every state there is a way to DONE or FAILED (no dead ends)."""
    for state in PlayerState:
        seen = {state}
        frontier = [state]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & {PlayerState.DONE, PlayerState.FAILED}
