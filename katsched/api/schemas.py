"""The JSON documents of the API, with the field names and shapes of the original (reference §1, §2).

Tasks and schedules go out as `katsched.core.models.Task` / `Schedule` themselves: one definition, serialised
by pydantic as the original's were (lowercase statuses, UTC times ending in ``Z``).
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from katsched.core.models import Schedule, Task, TaskStatus

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
MAX_PAGE = 1000
MAX_POP = 1000
DEFAULT_POP_LIMIT = 1  # the workers always send limit=1; handing out a whole queue by default is a defect


def _as_utc(moment: datetime) -> datetime:
    """Naive times mean UTC, as in the filter language; every stored time is timezone-aware UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("datetime out of range once converted to UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Priority = Annotated[int, Field(ge=BIGINT_MIN, le=BIGINT_MAX, description="Lower is served first.")]
Offset = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
PageLimit = Annotated[int, Field(ge=0, le=MAX_PAGE)]

_IGNORED = "Read-only: accepted so that a whole Task document can be pushed back, and ignored."


class TaskPush(BaseModel):
    """A task to queue. A whole Task document is accepted too: its read-only fields are ignored."""

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = Field(None, description="For boefje and normalizer tasks equal to data.id.")
    scheduler_id: str | None = Field(None, description="If given, must equal the scheduler in the path.")
    organisation: str
    priority: Priority | None = Field(None, description="Required and non-zero; 1 for manual scans.")
    data: dict[str, Any] = Field(description="The payload: a BoefjeTask, NormalizerTask or ReportTask.")
    status: TaskStatus | None = Field(None, description=_IGNORED)
    type: str | None = Field(None, description=_IGNORED)
    hash: str | None = Field(None, description=_IGNORED)
    schedule_id: uuid.UUID | None = Field(None, description=_IGNORED)
    created_at: datetime | None = Field(None, description=_IGNORED)
    modified_at: datetime | None = Field(None, description=_IGNORED)


class TaskPatch(BaseModel):
    """Fields to change; unknown keys are ignored. `null` leaves a field as it is, except `schedule_id`,
    where it unlinks the task. A status change must follow the transition table."""

    model_config = ConfigDict(extra="ignore")

    status: TaskStatus | None = None
    priority: Priority | None = None
    organisation: str | None = None
    data: dict[str, Any] | None = Field(None, description="Must keep the task's identity hash.")
    schedule_id: uuid.UUID | None = None
    id: uuid.UUID | None = Field(None, description=_IGNORED)
    scheduler_id: str | None = Field(None, description=_IGNORED)
    type: str | None = Field(None, description=_IGNORED)
    hash: str | None = Field(None, description=_IGNORED)
    created_at: datetime | None = Field(None, description=_IGNORED)
    modified_at: datetime | None = Field(None, description=_IGNORED)


class PopResult(BaseModel):
    results: list[Task]


class TaskPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[Task]


class SchedulePage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[Schedule]


class SchedulerOut(BaseModel):
    id: str
    type: str
    item_type: str = Field(description="The payload type, e.g. BoefjeTask.")
    qsize: int = Field(description="Tasks now queued.")
    last_activity: datetime | None = Field(description="Last push or pop through this API process.")


class QueueOut(BaseModel):
    """The shape of the original's removed `/queues`, which the web UI still calls."""

    id: str
    size: int
    maxsize: int
    item_type: str
    allow_replace: bool
    allow_updates: bool
    allow_priority_updates: bool


class ServiceHealth(BaseModel):
    service: str
    healthy: bool
    version: str | None = None
    additional: Any = None
    results: list["ServiceHealth"] = Field(default_factory=list)
    externals: dict[str, bool] = Field(default_factory=dict)


class PeerHealth(BaseModel):
    """A daemon on this database, in /health's `additional.peers`."""

    id: str
    hostname: str
    pid: int
    version: str
    started_at: UtcDatetime
    heartbeat_at: UtcDatetime
    stale: bool = Field(description="No heartbeat for three intervals: it died without saying it stopped.")
    leases: list[str] = Field(description="The once-only jobs it held at its last heartbeat.")


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheduler_id: str
    organisation: str
    data: dict[str, Any] = Field(description="The blueprint of the tasks: valid for the scheduler's type.")
    schedule: str | None = Field(None, description="A cron expression; sets deadline_at if that is absent.")
    deadline_at: UtcDatetime | None = None


class SchedulePatch(BaseModel):
    """Fields to change; unknown keys are ignored. A new `schedule` recomputes `deadline_at` unless the same
    patch gives one; new `data` is validated and re-hashed. `null` clears `schedule` or `deadline_at` and
    leaves the other fields as they are."""

    model_config = ConfigDict(extra="ignore")

    hash: str | None = Field(None, max_length=32, description="Must match the hash of the data.")
    data: dict[str, Any] | None = None
    enabled: bool | None = None
    schedule: str | None = None
    deadline_at: UtcDatetime | None = None


class TaskQueryParams(BaseModel):
    scheduler_id: str | None = None
    organisation: str | None = None
    task_type: str | None = None
    status: TaskStatus | None = None
    input_ooi: str | None = Field(None, description="Tasks whose data.input_ooi equals this.")
    offset: Offset = 0
    limit: PageLimit = 10
    min_created_at: UtcDatetime | None = None
    max_created_at: UtcDatetime | None = None


class ScheduleQueryParams(BaseModel):
    scheduler_id: str | None = None
    organisation: str | None = None
    schedule_hash: str | None = None
    enabled: bool | None = None
    offset: Offset = 0
    limit: PageLimit = 10
    min_deadline_at: UtcDatetime | None = None
    max_deadline_at: UtcDatetime | None = None
    min_created_at: UtcDatetime | None = None
    max_created_at: UtcDatetime | None = None


class PageParams(BaseModel):
    offset: Offset = 0
    limit: PageLimit = 10


class StatsParams(BaseModel):
    scheduler_id: str | None = None
    organisation_id: str | None = None


class ErrorDetail(BaseModel):
    detail: str


_ERROR_TEXT = {
    400: "Bad request, invalid item or invalid filter",
    401: "Missing or wrong bearer token",
    404: "No such scheduler, task or schedule",
    409: "Conflict (a queued duplicate, a duplicate hash, or a forbidden status change)",
    413: "Request body too large",
    429: "Queue full",
    500: "Database error",
    503: "Database unavailable; retry later",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route (every route may also answer 401, 413, 500 and 503)."""
    every = (*codes, 401, 413, 500, 503)
    return {code: {"model": ErrorDetail, "description": _ERROR_TEXT[code]} for code in sorted(set(every))}
