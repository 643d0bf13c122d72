"""The domain: tasks, schedules and the payloads OpenKAT sends, with the field names of the wire (SPEC §1)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SchedulerKind(StrEnum):
    BOEFJE = "boefje"
    NORMALIZER = "normalizer"
    REPORT = "report"


class Task(BaseModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    scheduler_id: str
    schedule_id: uuid.UUID | None = None
    organisation: str
    priority: int | None = None
    status: TaskStatus = TaskStatus.PENDING
    type: str | None = None
    hash: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    modified_at: datetime


class Schedule(BaseModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    scheduler_id: str
    organisation: str
    hash: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    schedule: str | None = None
    deadline_at: datetime | None = None
    created_at: datetime
    modified_at: datetime


class TaskStatusChange(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    changed_at: datetime
    reason: str | None = None


# Payloads. Extra keys are ignored on validation, as the OpenKAT senders add fields of their own.


class Boefje(BaseModel):
    id: str
    name: str | None = None
    version: str | None = None
    oci_image: str | None = None


class Normalizer(BaseModel):
    id: str
    name: str | None = None
    version: str | None = None


class BoefjeMeta(BaseModel):
    id: uuid.UUID
    boefje: Boefje
    input_ooi: str | None
    arguments: dict[str, Any] = Field(default_factory=dict)
    organization: str
    started_at: datetime | None
    ended_at: datetime | None


class RawData(BaseModel):
    id: uuid.UUID
    boefje_meta: BoefjeMeta
    mime_types: list[dict[str, str]]
    secure_hash: str | None = None
    hash_retrieval_link: str | None = None


class RawDataReceivedEvent(BaseModel):
    created_at: datetime
    organization: str
    raw_data: RawData


class BoefjeTask(BaseModel):
    type: ClassVar[str] = SchedulerKind.BOEFJE.value
    id: uuid.UUID | None = Field(default_factory=uuid.uuid4)
    boefje: Boefje
    input_ooi: str | None = None
    organization: str
    deduplication_key: uuid.UUID | None = None
    dispatches: list[Normalizer] = Field(default_factory=list)


class NormalizerTask(BaseModel):
    type: ClassVar[str] = SchedulerKind.NORMALIZER.value
    id: uuid.UUID | None = Field(default_factory=uuid.uuid4)
    normalizer: Normalizer
    raw_data: RawData


class ReportTask(BaseModel):
    type: ClassVar[str] = SchedulerKind.REPORT.value
    organisation_id: str
    report_recipe_id: str


TaskPayload = BoefjeTask | NormalizerTask | ReportTask

PAYLOAD_TYPES: dict[SchedulerKind, type[BoefjeTask] | type[NormalizerTask] | type[ReportTask]] = {
    SchedulerKind.BOEFJE: BoefjeTask,
    SchedulerKind.NORMALIZER: NormalizerTask,
    SchedulerKind.REPORT: ReportTask,
}


class Plugin(BaseModel):
    id: str
    type: Literal["boefje", "normalizer", "bit"]
    enabled: bool
    name: str | None = None
    version: str | None = None
    description: str | None = None
    authors: list[str] | None = None
    related: list[str] | None = None
    options: list[str] | None = None
    created: datetime | None = None
    scan_level: int | None = None
    consumes: str | list[str]
    produces: list[str]
    cron: str | None = None
    interval: int | None = None  # minutes
    run_on: list[Literal["create", "update"]] | None = None
    oci_image: str | None = None
    oci_arguments: list[str] | None = None


class ScanProfile(BaseModel):
    level: int
    reference: str
    scan_profile_type: str | None


class OOI(BaseModel):
    primary_key: str
    object_type: str
    scan_profile: ScanProfile | None


class MutationOperation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class ScanProfileMutation(BaseModel):
    operation: MutationOperation
    primary_key: str
    value: OOI | None
    client_id: str


class Organisation(BaseModel):
    id: str
    name: str | None = None


class BoefjeConfig(BaseModel):
    id: int
    boefje_id: str
    enabled: bool
    organisation_id: str
    settings: dict[str, Any] = Field(default_factory=dict)
    duplicates: list["BoefjeConfig"] = Field(default_factory=list)


class PushPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    allow_replace: bool = False
    allow_updates: bool = False
    allow_priority_updates: bool = False
    maxsize: int = 0


# The policy of a scheduler the configuration says nothing about; one instance, asked for on every push.
DEFAULT_PUSH_POLICY = PushPolicy()
