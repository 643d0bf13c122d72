"""Ports: the small Protocols through which the planners reach the world outside `core/`.

Each port has a real adapter and an in-memory one (`katsched.testing`); one contract suite runs against both,
so the fakes cannot drift from the real thing. Only stdlib, pydantic and `core` types appear here.
"""

import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from katsched.core.filters import FilterExpr
from katsched.core.models import (
    OOI,
    BoefjeConfig,
    BoefjeMeta,
    Organisation,
    Plugin,
    PushPolicy,
    Schedule,
    Task,
    TaskStatus,
)

# ----------------------------------------------------------------------------------------------------------
# KAT services: Katalogus (plugins), Octopoes (objects), Bytes (raw data).
#
# Shared rules: "absent" is an answer, not an error (an unknown organisation, plugin or object gives None
# or an empty result); a service that fails raises `katsched.errors.ServiceError`, and `ServiceUnavailable`
# when the failure is transient and the work should be deferred.
# ----------------------------------------------------------------------------------------------------------

PluginType = Literal["boefje", "normalizer", "bit"]


class PluginCatalog(Protocol):
    """The Katalogus: organisations, and the plugins each of them has (enabled or not)."""

    def organisations(self) -> list[Organisation]: ...

    def plugins(
        self, organisation_id: str, plugin_type: PluginType | None = None, consumes: str | None = None
    ) -> list[Plugin]:
        """The organisation's plugins, optionally only one type and only those that consume `consumes`
        (an object type for boefjes, a mime type for normalizers). Boefjes with a negative scan level are
        never listed, as the Katalogus hides them."""
        ...

    def plugin(self, organisation_id: str, plugin_id: str) -> Plugin | None: ...

    def fresh_plugins(self, organisation_id: str) -> list[Plugin]:
        """`plugins(organisation_id)` as the Katalogus has them now: asked afresh, never from a cache (a
        cache is refreshed with the answer). For decisions that must see a plugin disabled a moment ago."""
        ...

    def boefjes_consuming(self, organisation_id: str, ooi_type: str) -> list[Plugin]:
        """Boefjes, enabled or not, that take objects of `ooi_type`: the permission rule decides."""
        ...

    def normalizers_for_mime(self, organisation_id: str, mime_type: str) -> list[Plugin]:
        """Normalizers, enabled or not, that take raw files of `mime_type`."""
        ...

    def enabled_boefjes(self, organisation_id: str) -> list[Plugin]: ...

    def configs(
        self,
        boefje_id: str,
        organisation_id: str | None = None,
        enabled: bool | None = None,
        with_duplicates: bool = False,
    ) -> list[BoefjeConfig]:
        """Per-organisation settings of a boefje. With `organisation_id` and `with_duplicates`, each config
        lists the other organisations' enabled configs with identical settings (cross-organisation dedup)."""
        ...


class ObjectGraph(Protocol):
    """Octopoes: the objects (OOIs) of each organisation, as they were at `valid_time`."""

    def objects(
        self,
        organisation_id: str,
        object_types: Collection[str],
        scan_levels: Collection[int] | None = None,
        *,
        valid_time: datetime,
    ) -> Iterator[OOI]:
        """Objects of the given types (an empty collection matches nothing) and, when given, scan levels.
        Lazy: pages are fetched while iterating, so a `ServiceError` can surface during iteration."""
        ...

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None: ...

    def object_clients(
        self, reference: str, organisation_ids: Collection[str], *, valid_time: datetime
    ) -> dict[str, OOI]:
        """Of `organisation_ids`, those in which the object exists, each with its own copy of it."""
        ...


class RawDataIndex(Protocol):
    """Bytes: what the boefjes have run."""

    def last_run(self, boefje_id: str, input_ooi: str | None, organization: str) -> BoefjeMeta | None:
        """The newest run of the boefje on the object in the organisation; `input_ooi=None` matches any."""
        ...

    def last_runs(
        self, input_ooi: str | None, organization: str, boefje_ids: Collection[str]
    ) -> dict[str, BoefjeMeta]:
        """`last_run` of each of `boefje_ids` on one object, keyed by boefje id; those that never ran on it
        are left out. One request to Bytes for the object rather than one per boefje."""
        ...


# ----------------------------------------------------------------------------------------------------------
# Store: the task queue, the schedules, and what the planners need of the database beside them.
#
# The planners gather facts (newest task per hash, schedules per hash, due schedules), decide, and hand the
# store one batch of drafts to push; the store pushes them in one transaction, each linked to its schedule
# (found or created), so a batch is either wholly committed or not at all. A single push (the API's, the
# CLI's) is a batch of one: there is one push path. Failures raise `katsched.errors.StorageError`. The SQL
# adapters live in `katsched.store` (`Sql…`), the in-memory ones in `katsched.testing`; the store contract
# suite runs the same cases on both.
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleLink:
    """The schedule a pushed task belongs to, and that schedule's next deadline (the original's post_push)."""

    schedule_id: uuid.UUID | None  # an existing, enabled schedule; None: create one from the task
    deadline_at: datetime | None  # None: no next run (a one-off report)
    cron: str | None = None  # written to the schedule when given


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


# The decisions a push's outcomes make (a planner's, recorded with the push).
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
class ScheduleClaim:
    """Due schedules that one claimant holds until `until`: other claimants skip them meanwhile. `token`
    names the claim (a new one each time), so that a claim that lapsed and was taken by another cannot be
    confirmed or released by its first holder."""

    token: uuid.UUID
    until: datetime
    schedules: list[Schedule] = field(default_factory=list)

    @property
    def ids(self) -> set[uuid.UUID]:
        return {schedule.id for schedule in self.schedules}


class ScheduleStore(Protocol):
    """The schedules as the planners use them. Several daemons on one database split the due schedules
    between them: each claims a batch (`claim_due`), looks up what it needs for the schedules it holds,
    `confirm`s the claim just before it writes, and `release`s it once the batch is planned."""

    def due(self, scheduler_id: str, limit: int, organisation: str | None = None) -> list[Schedule]:
        """Enabled schedules whose deadline has passed and that have no active task, oldest deadline first
        (claimed or not: a read)."""
        ...

    def claim_due(
        self, scheduler_id: str, limit: int, lease: timedelta, organisation: str | None = None
    ) -> ScheduleClaim:
        """Claim up to `limit` of the `due` schedules that no claim holds (or whose claim has lapsed), oldest
        deadline first, for `lease`: in one transaction, so two claimants never hold the same schedule."""
        ...

    def confirm(self, claim: ScheduleClaim, lease: timedelta) -> set[uuid.UUID]:
        """Renew the claim for `lease` from now on the schedules it still holds; their ids. A schedule whose
        claim lapsed and was taken by another claimant is no longer held: its planning is left to that one."""
        ...

    def release(self, claim: ScheduleClaim) -> None:
        """Clear the claim on the schedules it still holds (planned, or to be tried again by anyone)."""
        ...

    def by_hashes(self, hashes: Collection[str]) -> dict[str, Schedule]: ...

    def set_deadlines(self, deadlines: Mapping[uuid.UUID, datetime | None]) -> None: ...

    def disable(self, schedule_ids: Collection[uuid.UUID]) -> None: ...


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

    def push(self, draft: TaskDraft) -> Task:
        """`push_many([draft])`, its refusal raised: `InvalidItem`, `QueueFull`, or `NotAllowed` naming the
        queued twin (`twin_id`) or the task that already has the draft's id."""
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
    ) -> list[tuple[Task, bytes]]:
        """`pop`, each task with its rendering; a task that cannot be rendered is failed, not handed out."""
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


@dataclass(frozen=True)
class ScheduleQuery:
    scheduler_id: str | None = None
    organisation: str | None = None
    hash: str | None = None
    enabled: bool | None = None
    min_deadline_at: datetime | None = None
    max_deadline_at: datetime | None = None
    min_created_at: datetime | None = None
    max_created_at: datetime | None = None
    filters: FilterExpr | None = None
    offset: int = 0
    limit: int | None = 10


@dataclass(frozen=True)
class SchedulePage:
    count: int
    schedules: list[Schedule] = field(default_factory=list)


class ScheduleRegistry(Protocol):
    """The schedules as the API and the CLI edit them. A second schedule with a hash already taken raises
    `NotAllowed`; an unknown one `NotFound`."""

    def create(
        self,
        scheduler_id: str,
        organisation: str,
        data: dict[str, Any],
        schedule_hash: str | None,
        *,
        schedule: str | None = None,
        deadline_at: datetime | None = None,
        enabled: bool = True,
    ) -> Schedule: ...

    def get(self, schedule_id: uuid.UUID) -> Schedule: ...

    def by_hash(self, schedule_hash: str) -> Schedule | None: ...

    def update(self, schedule_id: uuid.UUID, changes: Mapping[str, Any]) -> Schedule:
        """Apply `changes` to the editable fields, bumping modified_at."""
        ...

    def delete(self, schedule_id: uuid.UUID) -> bool:
        """Remove a schedule; its tasks keep existing without one. False when there was nothing to delete."""
        ...

    def list_schedules(self, query: ScheduleQuery) -> SchedulePage:
        """Schedules matching `query`, newest first (ties broken by id), with the count before pagination."""
        ...


class SeenPlugins(Protocol):
    """The boefjes whose objects have been enumerated once per organisation (kept across restarts)."""

    def seen(self, organisation_id: str) -> set[str]: ...

    def mark_seen(self, organisation_id: str, plugin_ids: Collection[str], at: datetime) -> None: ...

    def forget(self, organisation_id: str, plugin_ids: Collection[str]) -> None: ...


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


# ----------------------------------------------------------------------------------------------------------
# Jobs that must run on one daemon at a time (sweeps, retention, walks over every organisation).
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobLease:
    """Who may run the jobs of `name` until `expires_at` (held since `acquired_at`, renewals included)."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


class JobLeases(Protocol):
    """Leases in the store shared by every daemon: each one held by at most one holder (a daemon's instance
    id) at a time, and free again once it expires. Every call is one atomic statement, so any number of
    daemons racing for a lease leave exactly one holder. `now` comes from the caller's clock."""

    def acquire(self, name: str, holder: str, now: datetime, duration: timedelta) -> JobLease | None:
        """Take the lease, or renew it, until `now + duration`: when it is free, has expired (`expires_at <=
        now`) or is `holder`'s already (a renewal keeps `acquired_at`). The lease as `holder` now holds it,
        or None when another holder's lease is still running."""
        ...

    def release(self, name: str, holder: str) -> bool:
        """Free the lease if `holder` holds it (expired or not); whether it did."""
        ...

    def leases(self) -> list[JobLease]:
        """Every lease row, expired ones included, by name."""
        ...
