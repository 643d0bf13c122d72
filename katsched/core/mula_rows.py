"""Rows of the original scheduler's database → katsched rows (`katsched db import-mula`). Pure: no I/O,
and the moment priorities are computed at is a parameter.

What the original stored and how it carries over (reference §1.9, §1.10):

- scheduler ids: the combined `boefje` / `normalizer` / `report`, and the older per-organisation
  `boefje-<org>`;
- statuses: the upper-case names (`QUEUED`) → katsched's lower-case values;
- organisation: the column, or, in databases from before revision 0009 filled it, derived from `data` the way
  0009 did;
- timestamps: timestamptz, read as UTC. A finished task's `modified_at` is its dispatch time (§1.10): kept as
  it is, it is the closest the original came to "when this last ran", which our planners read from history;
- identity: every hash is recomputed; a row whose stored hash differs is reported, never imported under the
  wrong identity.
"""

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from katsched.core.deadlines import validate_cron
from katsched.core.hashing import task_hash
from katsched.core.models import NormalizerTask, SchedulerKind, TaskStatus
from katsched.core.push import parse_payload
from katsched.core.ranking import JUST_RAN, RankFacts, by_created_at, by_ended_at, staleness
from katsched.errors import InvalidItem, SourceError

OLDEST_REVISION, NEWEST_REVISION = 8, 11
FINISHED = {"COMPLETED": TaskStatus.COMPLETED, "FAILED": TaskStatus.FAILED, "CANCELLED": TaskStatus.CANCELLED}
IN_FLIGHT = ("DISPATCHED", "RUNNING")
# Why a queued task gets a new priority: the original ranked boefje tasks by their creation timestamp.
RERANK_REASON = {
    SchedulerKind.BOEFJE: "the original's priority was a FIFO creation timestamp; ranked by staleness",
    SchedulerKind.NORMALIZER: "no usable priority; ranked by the boefje's ended_at",
    SchedulerKind.REPORT: "no usable priority; ranked by creation time",
}


class InFlight(StrEnum):
    """What becomes of a task the original had handed to a runner when it was stopped."""

    REQUEUE = "requeue"
    FAIL = "fail"


@dataclass(frozen=True)
class Skipped:
    """A source row that is not imported: a stable reason and a one-line detail for the report."""

    table: str
    row_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class SourceSchedule:
    id: uuid.UUID
    scheduler_id: str
    organisation: str | None  # None before revision 0009
    hash: str | None
    data: dict[str, Any]
    enabled: bool
    schedule: str | None
    deadline_at: datetime | None
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True)
class SourceTask:
    id: uuid.UUID
    scheduler_id: str
    organisation: str | None  # None before revision 0009
    schedule_id: uuid.UUID | None
    status: str
    hash: str | None
    priority: int | None
    data: dict[str, Any]
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True)
class MappedTask:
    row: dict[str, Any]  # the katsched `tasks` row
    reranked: bool = False
    in_flight: str | None = None  # the original's status when it was handed to a runner


def supported_revision(version_num: str | None) -> int:
    """The revision number of the source schema; SourceError unless it is one this import understands."""
    digits = re.match(r"\d+", version_num or "")
    if digits is None:
        raise SourceError(f"the source database has no recognisable schema revision ({version_num!r})")
    number = int(digits.group())
    if number < OLDEST_REVISION:
        raise SourceError(
            f"the source database is at revision {version_num}, older than 0008: upgrade OpenKAT's scheduler "
            "to a release at 0008 or later first, then import"
        )
    if number > NEWEST_REVISION:
        raise SourceError(f"the source database is at revision {version_num}, newer than the 0011 this knows")
    return number


def split_scheduler_id(scheduler_id: str) -> tuple[SchedulerKind, str | None]:
    """`boefje` → (boefje, None); the older per-organisation `boefje-org1` → (boefje, "org1")."""
    kind, _, organisation = scheduler_id.partition("-")
    return SchedulerKind(kind), organisation or None


def organisation_from_data(kind: SchedulerKind, data: dict[str, Any]) -> str | None:
    """Where revision 0009 found each kind's organisation when it filled the new column."""
    value: Any
    if kind is SchedulerKind.BOEFJE:
        value = data.get("organization")
    elif kind is SchedulerKind.NORMALIZER:
        value = ((data.get("raw_data") or {}).get("boefje_meta") or {}).get("organization")
    else:
        value = data.get("organisation_id")
    return str(value) if value else None


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _scheduler(table: str, row: SourceSchedule | SourceTask) -> tuple[SchedulerKind, str] | Skipped:
    try:
        kind, suffix = split_scheduler_id(row.scheduler_id)
    except ValueError:
        return Skipped(table, str(row.id), "unknown_scheduler", f"scheduler id {row.scheduler_id!r}")
    organisation = row.organisation or organisation_from_data(kind, row.data) or suffix
    if not organisation:
        return Skipped(table, str(row.id), "no_organisation", "neither the row nor its data names one")
    return kind, organisation


def _identity(table: str, row: SourceSchedule | SourceTask, kind: SchedulerKind) -> str | Skipped:
    try:
        computed = task_hash(parse_payload(kind, row.data))
    except InvalidItem as error:
        return Skipped(table, str(row.id), "invalid_data", str(error))
    if row.hash and row.hash != computed:
        return Skipped(
            table, str(row.id), "hash_mismatch", f"stored {row.hash}, katsched computes {computed}"
        )
    return computed


def map_schedule(row: SourceSchedule) -> dict[str, Any] | Skipped:
    """The katsched `schedules` row of a source schedule, or why it is not imported."""
    found = _scheduler("schedules", row)
    if isinstance(found, Skipped):
        return found
    kind, organisation = found
    identity = _identity("schedules", row, kind)
    if isinstance(identity, Skipped):
        return identity
    if row.schedule:
        try:
            validate_cron(row.schedule)
        except ValueError as error:
            return Skipped("schedules", str(row.id), "invalid_cron", str(error))
    return {
        "id": row.id,
        "scheduler_id": kind.value,
        "organisation": organisation,
        "hash": identity,
        "data": row.data,
        "enabled": bool(row.enabled),
        "schedule": row.schedule or None,
        "deadline_at": utc(row.deadline_at) if row.deadline_at else None,
        "created_at": utc(row.created_at),
        "modified_at": utc(row.modified_at),
    }


@dataclass
class TaskMapper:
    """Maps the task stream in the source's order (created_at, id). It remembers what must be decided across
    rows, so the same source always maps to the same rows, however often the import runs.

    `queued_in_source`: (kind, hash) of every QUEUED task; an in-flight task with a queued twin is failed, not
    requeued (one queued task per identity). `last_runs`: newest `modified_at` of each finished boefje
    hash. `ranked_at`: the moment priorities are computed at (the source's last activity, so a rerun ranks
    the same). `schedule_ids`: the schedules that were imported; other links are dropped.
    """

    in_flight: InFlight
    ranked_at: datetime
    schedule_ids: set[uuid.UUID]
    queued_in_source: set[tuple[str, str]] = field(default_factory=set)
    last_runs: dict[str, datetime] = field(default_factory=dict)
    _queued: set[tuple[str, str]] = field(default_factory=set)

    def map(self, row: SourceTask) -> MappedTask | Skipped:
        found = _scheduler("tasks", row)
        if isinstance(found, Skipped):
            return found
        kind, organisation = found
        identity = _identity("tasks", row, kind)
        if isinstance(identity, Skipped):
            return identity
        data = _aligned_data(kind, row)
        if isinstance(data, Skipped):
            return data
        status = self._status(kind, identity, row)
        if isinstance(status, Skipped):
            return status
        priority, reranked = row.priority, False
        if status is TaskStatus.QUEUED:
            priority, reranked = self._priority(kind, identity, row)
        mapped = {
            "id": row.id,
            "scheduler_id": kind.value,
            "schedule_id": row.schedule_id if row.schedule_id in self.schedule_ids else None,
            "organisation": organisation,
            "priority": priority,
            "status": status.value,
            "type": kind.value,
            "hash": identity,
            "data": data,
            "created_at": utc(row.created_at),
            "modified_at": utc(row.modified_at),
        }
        return MappedTask(mapped, reranked, row.status if row.status in IN_FLIGHT else None)

    def _status(self, kind: SchedulerKind, identity: str, row: SourceTask) -> TaskStatus | Skipped:
        key = (kind.value, identity)
        if row.status in FINISHED:
            return FINISHED[row.status]
        if row.status == "QUEUED":
            if key in self._queued:
                return Skipped("tasks", str(row.id), "duplicate_queued", f"another task of hash {identity}")
            self._queued.add(key)
            return TaskStatus.QUEUED
        if row.status in IN_FLIGHT:
            twin_queued = key in self.queued_in_source or key in self._queued
            if self.in_flight is InFlight.FAIL or twin_queued:
                return TaskStatus.FAILED
            self._queued.add(key)
            return TaskStatus.QUEUED
        reason = "never_queued" if row.status == "PENDING" else "unknown_status"
        return Skipped("tasks", str(row.id), reason, f"status {row.status}")

    def _priority(self, kind: SchedulerKind, identity: str, row: SourceTask) -> tuple[int, bool]:
        priority = row.priority
        if kind is SchedulerKind.BOEFJE:
            if priority is not None and 1 <= priority <= JUST_RAN:
                return priority, False
            return staleness(RankFacts(last_run_at=self.last_runs.get(identity)), self.ranked_at), True
        if priority is not None and priority >= 1:
            return priority, False
        if kind is SchedulerKind.NORMALIZER:
            ended_at = NormalizerTask.model_validate(row.data).raw_data.boefje_meta.ended_at
            return by_ended_at(RankFacts(ended_at=ended_at), self.ranked_at), True
        return by_created_at(RankFacts(created_at=utc(row.created_at)), self.ranked_at), True


def _aligned_data(kind: SchedulerKind, row: SourceTask) -> dict[str, Any] | Skipped:
    """Boefje and normalizer tasks carry their id in `data` too (SPEC §1); fill it in where it is missing."""
    if kind is SchedulerKind.REPORT:
        return row.data
    stored = row.data.get("id")
    if stored is None:
        return {**row.data, "id": str(row.id)}
    if str(stored) != str(row.id):
        return Skipped("tasks", str(row.id), "id_mismatch", f"data.id {stored} differs from the task id")
    return row.data
