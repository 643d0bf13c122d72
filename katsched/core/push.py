"""The push decision of SPEC §2: validate a task for its scheduler, then insert, update or refuse."""

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from katsched.core.hashing import task_hash
from katsched.core.models import (
    PAYLOAD_TYPES,
    PushPolicy,
    Schedule,
    SchedulerKind,
    Task,
    TaskPayload,
    TaskStatus,
)
from katsched.core.ports import PushOutcome, PushResult, TaskDraft
from katsched.errors import InvalidItem, NotAllowed, NotFound, QueueFull


class PushAction(StrEnum):
    INSERT = "insert"
    UPDATE = "update"


def scheduler_kind(scheduler_id: str) -> SchedulerKind:
    """The scheduler named `scheduler_id`; `NotFound` for a name that is none."""
    try:
        return SchedulerKind(scheduler_id)
    except ValueError:
        raise NotFound(f"Scheduler {scheduler_id} not found") from None


def parse_payload(kind: SchedulerKind, data: dict[str, Any]) -> TaskPayload:
    try:
        return PAYLOAD_TYPES[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "data"
        raise InvalidItem(
            f"data is not a valid {PAYLOAD_TYPES[kind].__name__}: {where}: {first['msg']}"
        ) from exc


def validated_hash(kind: SchedulerKind, data: dict[str, Any], priority: int | None) -> str:
    payload = parse_payload(kind, data)
    if not priority:
        raise InvalidItem("a task must have a non-zero priority")
    return task_hash(payload)


def check_capacity(policy: PushPolicy, queued: int, priority: int) -> None:
    """Priorities ≤ 1 (manual scans) always fit; others are refused once the queue holds `maxsize` tasks."""
    if policy.maxsize and priority > 1 and queued >= policy.maxsize:
        raise QueueFull(f"the queue is full ({queued} of {policy.maxsize} tasks)")


ALREADY_QUEUED = "queue is not allowed to push items"


def decide_push(
    policy: PushPolicy,
    existing: tuple[int | None, dict[str, Any]] | None,
    priority: int,
    data: dict[str, Any],
) -> PushAction:
    """`existing` is (priority, data) of a QUEUED task with the same hash in the same scheduler, if any."""
    if existing is None:
        return PushAction.INSERT
    old_priority, old_data = existing
    if (
        policy.allow_replace
        or (policy.allow_updates and old_data != data)
        or (policy.allow_priority_updates and old_priority != priority)
    ):
        return PushAction.UPDATE
    raise NotAllowed(ALREADY_QUEUED)


def align_ids(
    kind: SchedulerKind, task_id: uuid.UUID | None, data: dict[str, Any]
) -> tuple[uuid.UUID, dict[str, Any]]:
    """Boefje and normalizer tasks carry their id twice (task.id == data.id): fill one from the other."""
    if kind is SchedulerKind.REPORT:
        return task_id or uuid.uuid4(), data
    raw = data.get("id")
    try:
        data_id = uuid.UUID(str(raw)) if raw is not None else None
    except ValueError as exc:
        raise InvalidItem(f"data.id is not a valid UUID: {raw!r}") from exc
    if task_id and data_id and task_id != data_id:
        raise InvalidItem(f"id {task_id} does not match data.id {data_id}")
    chosen = task_id or data_id or uuid.uuid4()
    return chosen, {**data, "id": str(chosen)}


@dataclass(frozen=True)
class PreparedDraft:
    """A draft validated for its scheduler: its id aligned with its data, its identity hash and priority."""

    draft: TaskDraft
    kind: SchedulerKind
    task_id: uuid.UUID
    data: dict[str, Any]
    hash: str
    priority: int


@dataclass(frozen=True)
class Refusal:
    """Why a push of one draft does not happen: the outcome to report, and the reason in words."""

    result: PushResult
    reason: str


def already_queued() -> Refusal:
    """The refusal of a draft whose queued twin the push policy may not change."""
    return Refusal(PushResult.ALREADY_QUEUED, ALREADY_QUEUED)


def twin_queued(twin_id: uuid.UUID) -> NotAllowed:
    """The refusal to move a task back to QUEUED while another task of its identity is queued."""
    refused = NotAllowed(f"task {twin_id} with the same identity is already queued")
    refused.twin_id = twin_id
    return refused


def prepare_draft(draft: TaskDraft) -> PreparedDraft:
    """Validate a draft for its scheduler: `NotFound` for an unknown scheduler, else `InvalidItem` (from a
    planner, a bug: it propagates)."""
    kind = scheduler_kind(draft.scheduler_id)
    task_id, data = align_ids(kind, draft.id, draft.data)
    identity = validated_hash(kind, data, draft.priority)
    assert draft.priority is not None  # validated_hash refuses a missing priority
    return PreparedDraft(draft, kind, task_id, data, identity, draft.priority)


def queued_task(item: PreparedDraft, schedule_id: uuid.UUID | None, now: datetime) -> Task:
    """The task a prepared draft becomes when it is inserted. Built from its values, which are typed already:
    validating them again cost ~5% of the intake's CPU."""
    return Task.model_construct(
        id=item.task_id,
        scheduler_id=item.draft.scheduler_id,
        schedule_id=schedule_id,
        organisation=item.draft.organisation,
        priority=item.priority,
        status=TaskStatus.QUEUED,
        type=item.kind.value,
        hash=item.hash,
        data=dict(item.data),
        created_at=now,
        modified_at=now,
    )


def with_schedule_decided(item: PreparedDraft, found: Schedule | None) -> PreparedDraft:
    """The draft with its `schedule` decided by its `schedule_rule` from `found`, the schedule of its
    identity as the push's transaction finds it; a draft without a rule as it is."""
    rule = item.draft.schedule_rule
    if rule is None:
        return item
    return replace(item, draft=replace(item.draft, schedule=rule(found), schedule_rule=None))


def decide_draft(
    policy: PushPolicy,
    existing: tuple[int | None, dict[str, Any]] | None,
    item: PreparedDraft,
    queued: int,
) -> PushAction | Refusal:
    """A batch's push of one draft: insert or update, or the refusal to report. `existing` as in
    `decide_push`; `queued` is how many tasks the scheduler holds QUEUED, this batch's included."""
    try:
        action = decide_push(policy, existing, item.priority, item.data)
        if action is PushAction.INSERT:
            check_capacity(policy, queued, item.priority)
    except NotAllowed:
        return already_queued()
    except QueueFull as full:
        return Refusal(PushResult.QUEUE_FULL, str(full))
    return action


def pushed_task(outcome: PushOutcome) -> Task:
    """The task a single push queued, or its refusal raised."""
    if outcome.task is not None:
        return outcome.task
    if outcome.result is PushResult.QUEUE_FULL:
        raise QueueFull(outcome.refusal)
    refused = NotAllowed(outcome.refusal)
    refused.twin_id = outcome.twin_id
    raise refused
