"""The campaign state machine: one table says which action moves a campaign from which state to which.

::

    draft ──start──▶ scheduled ──planned──▶ running ──pause──▶ paused
                                              ▲  ◀──resume──────┘
                                              │
    completed ◀──complete── running     completed ──resend──▶ running
    cancelled ◀──cancel── draft | scheduled | running | paused

``scheduled`` means "started, the audience is being frozen into the send ledger"; the planning job moves it
to ``running`` once the last ledger row is written, and only then may the dispatcher send. Pausing is
refused while planning runs (cancel instead): a half-planned campaign must not look finished to anyone.

The storage layer applies a transition as a guarded UPDATE (``WHERE state IN sources(action)``), so two
concurrent requests cannot both win; this module only decides and explains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

from dispatcher.errors import ConflictError, InputError

State = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
Action = Literal["start", "planned", "pause", "resume", "complete", "cancel", "resend"]

STATES: Final[tuple[State, ...]] = get_args(State)
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
FINAL_STATES: Final[frozenset[State]] = frozenset({"completed", "cancelled"})
ACTIVE_STATES: Final[frozenset[State]] = frozenset({"scheduled", "running", "paused"})

TRANSITIONS: Final[Mapping[Action, Mapping[State, State]]] = {
    "start": {"draft": "scheduled"},
    "planned": {"scheduled": "running"},
    "pause": {"running": "paused"},
    "resume": {"paused": "running"},
    "complete": {"running": "completed"},
    "cancel": {
        "draft": "cancelled",
        "scheduled": "cancelled",
        "running": "cancelled",
        "paused": "cancelled",
    },
    "resend": {"running": "running", "paused": "paused", "completed": "running"},
}

_WHY: Final[Mapping[tuple[Action, State], str]] = {
    ("start", "scheduled"): "it was already started and is being planned",
    ("start", "running"): "it is already running",
    ("start", "paused"): "it was already started (it is paused: resume it)",
    ("pause", "scheduled"): "its audience is still being planned; wait until it runs, or cancel it",
    ("pause", "paused"): "it is already paused",
    ("pause", "draft"): "it has not been started",
    ("resume", "running"): "it is already running",
    ("resume", "draft"): "it has not been started (start it)",
    ("resume", "scheduled"): "its audience is still being planned; it runs on its own when done",
    ("resend", "draft"): "it has not been started",
    ("resend", "scheduled"): "its audience is still being planned",
}


_DONE: Final[Mapping[Action, str]] = {
    "start": "started",
    "planned": "marked planned",
    "pause": "paused",
    "resume": "resumed",
    "complete": "completed",
    "cancel": "cancelled",
    "resend": "resent to its failed recipients",
}


_STATE_OF: Final[Mapping[str, State]] = {s: s for s in STATES}
_ACTION_OF: Final[Mapping[str, Action]] = {a: a for a in ACTIONS}


def _check(state: str, action: str) -> tuple[State, Action]:
    """Plain strings (from the database or a caller) as the typed names, or InputError."""
    if state not in _STATE_OF:
        raise InputError(f"unknown campaign state {state!r}; known: {', '.join(STATES)}")
    if action not in _ACTION_OF:
        raise InputError(f"unknown campaign action {action!r}; known: {', '.join(ACTIONS)}")
    return _STATE_OF[state], _ACTION_OF[action]


def transition(state: str, action: str) -> State:
    """The state ``action`` leads to from ``state``; ConflictError (409) saying why when it is not allowed."""
    current, act = _check(state, action)
    target = TRANSITIONS[act].get(current)
    if target is None:
        raise ConflictError(explain(current, act))
    return target


def explain(state: State, action: Action) -> str:
    """A sentence for the marketer: what cannot be done and why."""
    reason = _WHY.get((action, state))
    if reason is None:
        reason = f"it is {state}" if state not in FINAL_STATES else f"it is {state} (final)"
    allowed = ", ".join(TRANSITIONS[action])
    return f"campaign cannot be {_DONE[action]}: {reason}; allowed from: {allowed}"


def sources(action: str) -> tuple[State, ...]:
    """The states ``action`` may start from: the guard of its UPDATE."""
    _, act = _check("draft", action)
    return tuple(TRANSITIONS[act])


def can(state: str, action: str) -> bool:
    current, act = _check(state, action)
    return current in TRANSITIONS[act]
