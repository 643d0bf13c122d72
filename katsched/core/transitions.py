"""Which status moves a task may make (SPEC §2), and when a lease has run out."""

from datetime import datetime, timedelta

from katsched.core.models import TaskStatus
from katsched.errors import InvalidTransition

S = TaskStatus

ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.DISPATCHED, S.CANCELLED}),
    S.DISPATCHED: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.QUEUED, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.QUEUED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Moves only an operator makes (`katsched tasks requeue`), never a runner, the API or a planner: a finished
# task given another try. To everyone else a terminal status stays terminal (SPEC §2).
OPERATOR_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset({S.QUEUED}),
}

TERMINAL = frozenset(status for status, moves in ALLOWED.items() if not moves)
REQUEUEABLE = frozenset(status for status, moves in OPERATOR_ALLOWED.items() if S.QUEUED in moves)
ACTIVE = frozenset({S.PENDING, S.QUEUED, S.DISPATCHED, S.RUNNING})
LEASE_EXPIRED = "lease_expired"  # the reason recorded when a sweep fails a task whose lease ran out


def allowed_moves(current: TaskStatus, *, by_operator: bool = False) -> frozenset[TaskStatus]:
    """The statuses `current` may move to. Re-setting the current status is always allowed: a heartbeat, or
    a runner repeating its last report after losing the answer (a finished task then stays as it is).
    `by_operator` adds the moves only an explicit operator action may make."""
    extra = OPERATOR_ALLOWED.get(current, frozenset()) if by_operator else frozenset()
    return ALLOWED[current] | {current} | extra


def check_transition(current: TaskStatus, new: TaskStatus, *, by_operator: bool = False) -> None:
    moves = allowed_moves(current, by_operator=by_operator)
    if new not in moves:
        allowed = ", ".join(sorted(moves))
        if current in TERMINAL:
            allowed = f"none, the task is finished (repeating {current} is accepted)"
        raise InvalidTransition(f"cannot change status from {current} to {new}; allowed: {allowed}")


def lease_expired(
    status: TaskStatus,
    modified_at: datetime,
    now: datetime,
    dispatch_timeout: timedelta,
    run_timeout: timedelta,
) -> bool:
    """A dispatched task not started in time, or a running task without a heartbeat, has lost its lease."""
    if status is TaskStatus.DISPATCHED:
        return now - modified_at > dispatch_timeout
    if status is TaskStatus.RUNNING:
        return now - modified_at > run_timeout
    return False
