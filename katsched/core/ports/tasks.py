"""Ports of the task store: the queue, what the planners need of it, their decisions, and housekeeping.

The planners gather facts (newest task per hash, schedules per hash, due schedules), decide, and hand the
store one batch of drafts to push; the store pushes them in one transaction, each linked to its schedule
(found or created), so a batch is either wholly committed or not at all. A single push (the API's, the
CLI's) is a batch of one: there is one push path. Failures raise `katsched.errors.StorageError`.
"""

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from katsched.core.filters import FilterExpr
from katsched.core.models import (
    PushPolicy,
    Schedule,
    Task,
    TaskStatus,
)
from katsched.core.ports.schedules import ScheduleLink

# Decides a draft's `schedule` from the schedule of its identity as the push's own transaction finds it
# (None: there is none).
ScheduleRule = Callable[[Schedule | None], ScheduleLink | None]


@dataclass(frozen=True)
class TaskDraft:
    """A task to queue. `id` None: a new id (for boefje and normalizer tasks, `data["id"]`). A priority
    that is None or 0 is refused by the push (`InvalidItem`), as is data that does not fit the scheduler."""

    scheduler_id: str
    organisation: str
    priority: int | None
    data: dict[str, Any]
    id: uuid.UUID | None = None
    schedule: ScheduleLink | None = None
    last_run_at: datetime | None = None  # the fact an automatic priority was ranked from
    rerank_at: datetime | None = None  # when that priority changes next; None: never re-ranked
    schedule_id: uuid.UUID | None = None  # an existing schedule joined as is (its deadline is not moved)
    # Instead of `schedule`, for a push that cannot know the schedule before its transaction (the API's):
    # looked up and decided inside it, so that no other writer changes the schedule in between.
    schedule_rule: ScheduleRule | None = None


class PushResult(StrEnum):
    PUSHED = "pushed"  # inserted, or a queued duplicate updated where the push policy allows it
    ALREADY_QUEUED = "already_queued"  # a queued task with the same hash, and the policy forbids touching it
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True)
class PushOutcome:
    draft: TaskDraft
    result: PushResult
    task: Task | None = None  # the queued task, when PUSHED
    twin_id: uuid.UUID | None = None  # the queued duplicate, when ALREADY_QUEUED
    refusal: str = ""  # why it was not pushed, in words


@dataclass(frozen=True)
class QueuedRank:
    """A waiting task's rank, and when the same work last ran when it was ranked (None: unknown)."""

    task_id: uuid.UUID
    priority: int
    created_at: datetime
    last_run_at: datetime | None


@dataclass(frozen=True)
class NewRank:
    priority: int
    rerank_at: datetime | None  # when it changes next; None: never


@dataclass(frozen=True)
class DecisionRecord:
    """The last decision a planner took about one (organisation, subject, plugin): kept for a retention window
    so that `katsched explain` can say what happened last time, not only what would happen now.

    `subject` is the object's reference (boefjes; "" for a boefje that takes none) or the raw file's id
    (normalizers). `action` is a `rules.Action` value; `reason` a rule's reason or a push result.
    """

    organisation: str
    subject: str
    plugin_id: str
    scheduler_id: str
    action: str
    reason: str
    decided_at: datetime
    task_id: uuid.UUID | None = None  # the task pushed, when one was
    subject_data: Mapping[str, Any] | None = None  # the raw file (normalizers), so it can be reassessed


class DecisionLog(Protocol):
    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        """Keep each as the last decision of its (organisation, subject, plugin), replacing the one before."""
        ...

    def last(self, organisation: str, subject: str) -> dict[str, DecisionRecord]:
        """The last decisions about the subject in the organisation, by plugin id."""
        ...


DecisionsOf = Callable[[Sequence["PushOutcome"]], Sequence[DecisionRecord]]


class TaskStore(Protocol):
    def latest_by_hash(self, scheduler_id: str, hashes: Collection[str]) -> dict[str, Task]:
        """The newest task (by creation, any status) of each hash that has one."""
        ...

    def push_many(self, drafts: Sequence[TaskDraft]) -> list[PushOutcome]:
        """Push the drafts in order, in one transaction, under each scheduler's push policy; one outcome each.
        A PUSHED task with a `schedule` link joins that schedule (created if `schedule_id` is None), whose
        deadline (and cron, if given) is set."""
        ...

    def push_with_decisions(
        self, drafts: Sequence[TaskDraft], decisions_of: DecisionsOf, log: DecisionLog
    ) -> list[PushOutcome]:
        """`push_many(drafts)`, then `log.record(decisions_of(outcomes))`: both in the push's transaction when
        `log` keeps its decisions in the store's own database, so a planner run commits once, not twice."""
        ...

    def cancel_queued_for_object(
        self, scheduler_id: str, organisation: str, input_ooi: str, reason: str
    ) -> list[uuid.UUID]:
        """Cancel the organisation's QUEUED tasks whose `data.input_ooi` is `input_ooi`; their ids."""
        ...

    def raw_file_planned(self, hashes: Collection[str], raw_data_id: uuid.UUID) -> set[str]:
        """Of the normalizer task `hashes`, those that already have a task for this raw file."""
        ...

    def tasks_for_raw_file(self, organisation: str, raw_data_id: uuid.UUID) -> list[Task]:
        """The organisation's normalizer tasks for the raw file, newest first."""
        ...

    def ranks_due(self, scheduler_id: str, organisation: str, now: datetime, limit: int) -> list[QueuedRank]:
        """Up to `limit` of the organisation's QUEUED tasks whose rank is due to change at `now` (pushed with
        a `rerank_at` that has passed), longest due first. A manual push has none and keeps its priority."""
        ...

    def set_ranks(self, ranks: Mapping[uuid.UUID, NewRank]) -> int:
        """Re-rank the tasks that are still QUEUED; how many were."""
        ...

    def popped_by(self, task_id: uuid.UUID) -> "PoppedBy | None":
        """Who popped the task last, and when; None for a task never popped (or unknown)."""
        ...


@dataclass(frozen=True)
class PoppedBy:
    """The runner that popped a task: its address (an IP, or "cli"), its User-Agent, and when."""

    address: str | None
    agent: str | None
    at: datetime | None = None

    def bounded(self, limit: int = 200) -> "PoppedBy":
        """Both values cut to `limit` characters: a header is the client's to choose."""
        return PoppedBy(
            self.address[:limit] if self.address else None, self.agent[:limit] if self.agent else None
        )


@dataclass(frozen=True)
class TaskQuery:
    scheduler_id: str | None = None
    organisation: str | None = None
    type: str | None = None
    status: TaskStatus | None = None
    input_ooi: str | None = None
    min_created_at: datetime | None = None
    max_created_at: datetime | None = None
    filters: FilterExpr | None = None
    offset: int = 0
    limit: int | None = 10


@dataclass(frozen=True)
class TaskPage:
    count: int  # matching tasks before pagination
    tasks: list[Task] = field(default_factory=list)


Render = Callable[[Task], bytes]


def render_task(task: Task) -> bytes:
    """The default rendering of a popped task: its JSON."""
    return task.model_dump_json().encode()


class TaskQueue(Protocol):
    """The durable priority queue of each scheduler, as the API, the CLI and the runners use it. Unknown
    tasks raise `NotFound`, an unknown scheduler too; a status change the transition table forbids raises
    `InvalidTransition`."""

    def policy(self, scheduler_id: str) -> PushPolicy: ...

    def push(self, draft: TaskDraft, *, wait: bool = True) -> Task:
        """`push_many([draft])`, its refusal raised: `InvalidItem`, `QueueFull`, or `NotAllowed` naming the
        queued twin (`twin_id`) or the task that already has the draft's id. `wait=False`: as for
        `pop_rendered`."""
        ...

    def push_many(self, drafts: Sequence[TaskDraft]) -> list[PushOutcome]:
        """As `TaskStore.push_many`."""
        ...

    def pop(
        self,
        scheduler_id: str,
        limit: int = 1,
        filters: FilterExpr | None = None,
        *,
        popped_by: PoppedBy | None = None,
    ) -> list[Task]:
        """Claim up to `limit` of the best matching QUEUED tasks and return them as DISPATCHED."""
        ...

    def pop_rendered(
        self,
        scheduler_id: str,
        limit: int = 1,
        filters: FilterExpr | None = None,
        render: Render = ...,
        *,
        popped_by: PoppedBy | None = None,
        wait: bool = True,
    ) -> list[tuple[Task, bytes]]:
        """`pop`, each task with its rendering; a task that cannot be rendered is failed, not handed out.
        `wait=False`: raise `WouldWait` at once rather than wait for another writer's lock or a connection."""
        ...

    def peek(self, scheduler_id: str, limit: int = 1, offset: int = 0) -> list[Task]: ...

    def get(self, task_id: uuid.UUID) -> Task: ...

    def popped_by(self, task_id: uuid.UUID) -> PoppedBy | None: ...

    def history(self, task_id: uuid.UUID) -> list[tuple[TaskStatus, datetime, str | None]]: ...

    def update(self, task_id: uuid.UUID, changes: Mapping[str, Any], reason: str | None = None) -> Task:
        """Apply `changes` (any of status, priority, data, organisation, schedule_id), bumping modified_at."""
        ...

    def set_status(self, task_id: uuid.UUID, status: TaskStatus, reason: str | None = None) -> Task: ...

    def cancel(self, task_id: uuid.UUID, reason: str | None = None) -> Task: ...

    def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Tasks matching `query`, newest first (ties broken by id), with the count before pagination."""
        ...

    def qsize(self, scheduler_id: str) -> int: ...

    def counts(self) -> list[tuple[str, str, TaskStatus, int]]:
        """(scheduler_id, organisation, status, number of tasks) for every combination that has tasks."""
        ...

    def hourly_stats(
        self, since: datetime, scheduler_id: str | None = None, organisation: str | None = None
    ) -> dict[datetime, dict[str, int]]: ...

    def ping(self) -> None:
        """Raise `StorageError` unless the store answers now."""
        ...

    @property
    def single_writer(self) -> bool:
        """Whether one write at a time holds the whole store (SQLite): writers had better take turns."""
        ...


class Housekeeping(Protocol):
    """What the sweeps and the retention job do to the store, each step its own transaction. `now` and the
    cutoffs come from the caller's clock; pruning deletes at most `batch_size` rows per call."""

    def requeue_lost_dispatches(
        self, scheduler_id: str, now: datetime, dispatch_timeout: timedelta, max_attempts: int
    ) -> list[uuid.UUID]:
        """Queue again each DISPATCHED task not started within `dispatch_timeout`, counting the lost attempt,
        while fewer than `max_attempts` were lost and no task of its identity is queued meanwhile."""
        ...

    def sweep_expired_leases(
        self,
        scheduler_id: str,
        now: datetime,
        dispatch_timeout: timedelta,
        run_timeout: timedelta,
        dispatch_reason: str,
    ) -> list[uuid.UUID]:
        """Fail DISPATCHED tasks not started within `dispatch_timeout` (recording `dispatch_reason`) and
        RUNNING ones silent for `run_timeout`."""
        ...

    def prune_finished_tasks(self, older_than: datetime, batch_size: int) -> int: ...

    def prune_history(self, older_than: datetime, batch_size: int) -> int: ...

    def prune_decisions(self, older_than: datetime, batch_size: int) -> int: ...

    def prune_daemons(self, older_than: datetime) -> int:
        """Forget daemons whose last heartbeat is older than `older_than`."""
        ...

    def prune_hour_counts(self, older_than: datetime) -> int: ...

    def count_prunable(
        self, tasks_before: datetime, history_before: datetime, daemons_before: datetime
    ) -> tuple[int, int, int]:
        """What a full pruning run would delete now: (finished tasks, history rows, daemon rows)."""
        ...
