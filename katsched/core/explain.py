"""What `katsched explain` answers: the documents, and the verdict line each decision reads as.

Pure: the explainer (`katsched.schedulers.explain`) runs the planners' own gather and decide steps and hands
the facts here to be worded. One document shape serves the CLI (`--json`), the API and the rendering.
"""

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from katsched.core.models import TaskStatus
from katsched.core.rules import Reason

DEFERRED = "deferred"  # the planner would defer: a service it needs for this decision is down
UNKNOWN = "unknown"  # the decision cannot be told: a service it needs is down


class VerdictKind(StrEnum):
    QUEUE = "queue"  # would queue now
    WAIT = "wait"  # too soon: grace period or interval
    ACTIVE = "active"  # a task of the same work is pending, queued, dispatched or running
    PLANNED = "planned"  # (normalizers) a task for this raw file exists
    BLOCKED = "blocked"  # a rule refuses it until something changes (plugin, object, settings)
    DEFERRED = "deferred"
    UNKNOWN = "unknown"


# The refusals an operator must act on; waiting, active and already planned work resolves by itself.
BLOCKING: frozenset[str] = frozenset(
    {
        Reason.PLUGIN_GONE,
        Reason.PLUGIN_DISABLED,
        Reason.NOT_A_BOEFJE,
        Reason.PLUGIN_SCAN_LEVEL_UNKNOWN,
        Reason.NO_SCAN_PROFILE,
        Reason.SCAN_LEVEL_TOO_LOW,
        Reason.RUN_ON_EXCLUDES_CREATE,
        Reason.RUN_ON_EXCLUDES_UPDATE,
        Reason.OOI_DELETED,
        Reason.OOI_GONE,
        Reason.NOT_CONSUMED,
        Reason.NOT_PERMITTED,
        "queue_full",
        "invalid_data",
        "error_mime_type",
    }
)


class Runner(BaseModel):
    """The runner that popped a task last: what `katsched tasks show` calls `popped_by`."""

    address: str | None = Field(description='Its network address, or "cli" for the command line.')
    agent: str | None = Field(description="The User-Agent it sent.")
    at: datetime = Field(description="When it popped the task.")

    def __str__(self) -> str:
        return f"{self.address or '?'} ({self.agent or 'no user agent'})"


class TaskRef(BaseModel):
    id: uuid.UUID
    status: TaskStatus
    created_at: datetime
    since: datetime = Field(description="When its status last changed (modified_at).")
    popped_by: Runner | None = Field(
        None,
        description="The runner holding it: set for an active task that was popped (dispatched, running).",
    )


class LastRun(BaseModel):
    at: datetime | None = Field(description="The moment the grace period counts from; null: never ran.")
    source: str | None = Field(description='"katsched" (our history), "bytes", or null.')
    task: TaskRef | None = Field(None, description="The newest task of this work in our history.")
    bytes_started_at: datetime | None = None
    bytes_ended_at: datetime | None = None


class ScheduleFacts(BaseModel):
    id: uuid.UUID
    enabled: bool
    cron: str | None
    interval_minutes: int | None
    deadline_at: datetime | None
    disabled_reason: str | None = Field(None, description="Why the planner disabled it, when it did.")


class LastDecision(BaseModel):
    action: str
    reason: str
    decided_at: datetime
    task_id: uuid.UUID | None = None


class BoefjeExplanation(BaseModel):
    boefje: str
    verdict: str = Field(description='One line, e.g. "would queue now", "blocked: scan level 1 < 2".')
    kind: VerdictKind
    reason: str = Field(description="The planner's reason (a rule's, or deferred/unknown).")
    enabled: bool | None = None
    plugin_scan_level: int | None = None
    object_scan_level: int | None = None
    run_on: list[str] = Field(default_factory=list)
    interval_minutes: int | None = None
    grace_period_seconds: float
    last_run: LastRun | None = None
    eligible_at: datetime | None = Field(None, description="When the grace period or interval ends.")
    active_task: TaskRef | None = None
    schedule: ScheduleFacts | None = None
    twins: list[str] = Field(
        default_factory=list, description="Other organisations one run would also serve (deduplication)."
    )
    last_decision: LastDecision | None = None
    task_hash: str


class NormalizerExplanation(BaseModel):
    normalizer: str
    verdict: str
    kind: VerdictKind
    reason: str
    enabled: bool | None = None
    task: TaskRef | None = None
    last_decision: LastDecision | None = None


class Explanation(BaseModel):
    """Why (not): the decision each plugin would get now, and the facts behind it."""

    organisation: str
    taken_at: datetime
    ooi: str | None = None
    object_type: str | None = None
    object_scan_level: int | None = None
    operation: str | None = Field(None, description="The mutation the boefje decisions assume.")
    raw: uuid.UUID | None = None
    mime_types: list[str] = Field(default_factory=list)
    boefjes: list[BoefjeExplanation] = Field(default_factory=list)
    normalizers: list[NormalizerExplanation] = Field(default_factory=list)
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Services that were down, with the error: the answer is partial."
    )


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def boefje_verdict(
    reason: str,
    *,
    object_level: int | None = None,
    plugin_level: int | None = None,
    run_on: list[str] | None = None,
    operation: str | None = None,
    object_type: str | None = None,
    eligible_at: datetime | None = None,
    schedule: ScheduleFacts | None = None,
    active: TaskRef | None = None,
    unavailable: str | None = None,
) -> tuple[VerdictKind, str]:
    """The kind and the one line of a boefje decision's `reason`, with the facts it names."""
    if reason in (Reason.WITHIN_GRACE_PERIOD, Reason.WITHIN_INTERVAL):
        return VerdictKind.WAIT, _waiting(reason, eligible_at, schedule)
    if reason == Reason.ALREADY_ACTIVE and active is not None:
        held = f", held by {active.popped_by}" if active.popped_by is not None else ""
        return (
            VerdictKind.ACTIVE,
            f"already active: task {active.id} {active.status} since {stamp(active.since)}{held}",
        )
    if reason == DEFERRED:
        return VerdictKind.DEFERRED, f"deferred: {unavailable} is unavailable; the planner would try again"
    if reason == UNKNOWN:
        return VerdictKind.UNKNOWN, f"unknown: {unavailable} is unavailable"
    blocked = _blocked(reason, object_level, plugin_level, run_on, operation, object_type)
    if blocked is not None:
        return VerdictKind.BLOCKED, f"blocked: {blocked}"
    if reason == Reason.PREVIOUS_STALLED:
        return VerdictKind.QUEUE, "would queue now (the previous task lost its lease)"
    return VerdictKind.QUEUE, "would queue now"


def _waiting(reason: str, eligible_at: datetime | None, schedule: ScheduleFacts | None) -> str:
    what = "grace period" if reason == Reason.WITHIN_GRACE_PERIOD else "interval"
    if schedule is not None and schedule.enabled and schedule.deadline_at is not None and eligible_at:
        return f"next run at {stamp(max(schedule.deadline_at, eligible_at))} ({what})"
    ends = stamp(eligible_at) if eligible_at is not None else "?"
    return f"waits: {what} ends at {ends}; then on the next mutation"


def _blocked(
    reason: str,
    object_level: int | None,
    plugin_level: int | None,
    run_on: list[str] | None,
    operation: str | None,
    object_type: str | None,
) -> str | None:
    texts = {
        Reason.PLUGIN_DISABLED: "boefje disabled in this organisation",
        Reason.PLUGIN_SCAN_LEVEL_UNKNOWN: "the boefje has no scan level",
        Reason.NO_SCAN_PROFILE: "the object has no scan profile",
        Reason.SCAN_LEVEL_TOO_LOW: f"scan level {object_level} < {plugin_level}",
        Reason.RUN_ON_EXCLUDES_CREATE: f"run_on {run_on} excludes {operation}",
        Reason.RUN_ON_EXCLUDES_UPDATE: f"run_on {run_on} excludes {operation}",
        Reason.NOT_CONSUMED: f"the boefje does not take {object_type} objects",
    }
    if reason in texts:
        return texts[Reason(reason)]
    return reason.replace("_", " ") if reason in BLOCKING else None


def normalizer_verdict(
    reason: str, task: TaskRef | None, unavailable: str | None = None
) -> tuple[VerdictKind, str]:
    if reason == "already_planned":
        where = f": task {task.id} {task.status}" if task is not None else ""
        return VerdictKind.PLANNED, f"planned{where}"
    if reason == Reason.PLUGIN_DISABLED:
        return VerdictKind.BLOCKED, "blocked: normalizer disabled in this organisation"
    if reason == "error_mime_type":
        return VerdictKind.BLOCKED, "blocked: the raw file records a boefje failure (error/… mime type)"
    if reason == UNKNOWN:
        return VerdictKind.UNKNOWN, f"unknown: {unavailable} is unavailable"
    return VerdictKind.QUEUE, "would queue now"
