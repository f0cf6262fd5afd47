"""The campaign state machine, table-driven: every (state, action) pair is either allowed or a clear 409."""

from __future__ import annotations

import pytest

from dispatcher.core.lifecycle import ACTIONS, STATES, TRANSITIONS, can, sources, transition
from dispatcher.errors import ConflictError, InputError

ALLOWED = [
    ("draft", "start", "scheduled"),
    ("scheduled", "planned", "running"),
    ("running", "pause", "paused"),
    ("paused", "resume", "running"),
    ("running", "complete", "completed"),
    ("draft", "cancel", "cancelled"),
    ("scheduled", "cancel", "cancelled"),
    ("running", "cancel", "cancelled"),
    ("paused", "cancel", "cancelled"),
    ("running", "resend", "running"),
    ("paused", "resend", "paused"),
    ("completed", "resend", "running"),
]
ALLOWED_PAIRS = {(state, action) for state, action, _ in ALLOWED}
REFUSED = [(s, a) for s in STATES for a in ACTIONS if (s, a) not in ALLOWED_PAIRS]


@pytest.mark.parametrize(("state", "action", "target"), ALLOWED)
def test_allowed_moves(state: str, action: str, target: str) -> None:
    assert transition(state, action) == target
    assert can(state, action)
    assert state in sources(action)


@pytest.mark.parametrize(("state", "action"), REFUSED)
def test_every_other_move_is_a_conflict_that_says_why(state: str, action: str) -> None:
    assert not can(state, action)
    with pytest.raises(ConflictError) as caught:
        transition(state, action)
    message = caught.value.message
    assert message.startswith("campaign cannot be ")
    assert "allowed from: " + ", ".join(TRANSITIONS[action]) in message  # type: ignore[index]
    assert caught.value.status == 409


@pytest.mark.parametrize(
    ("state", "action", "words"),
    [
        ("scheduled", "pause", "still being planned"),
        ("completed", "cancel", "completed (final)"),
        ("cancelled", "resume", "cancelled (final)"),
        ("running", "start", "already running"),
        ("paused", "pause", "already paused"),
    ],
)
def test_messages_name_the_reason(state: str, action: str, words: str) -> None:
    with pytest.raises(ConflictError) as caught:
        transition(state, action)
    assert words in caught.value.message


def test_the_table_covers_only_known_states() -> None:
    assert len(REFUSED) + len(ALLOWED) == len(STATES) * len(ACTIONS)
    for moves in TRANSITIONS.values():
        assert set(moves) <= set(STATES)
        assert set(moves.values()) <= set(STATES)
    assert not any(s in ("completed", "cancelled") for s in sources("cancel"))


@pytest.mark.parametrize(("state", "action"), [("sending", "start"), ("draft", "launch"), ("", "")])
def test_unknown_names_are_input_errors(state: str, action: str) -> None:
    with pytest.raises(InputError):
        transition(state, action)
