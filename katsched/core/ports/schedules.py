"""Ports of the schedules: as the planners use them (claims on due schedules included) and as the API
and the CLI edit them.

Failures raise `katsched.errors.StorageError`.
"""

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from katsched.core.filters import FilterExpr
from katsched.core.models import (
    Schedule,
)


@dataclass(frozen=True)
class ScheduleLink:
    """The schedule a pushed task belongs to, and that schedule's next deadline (the original's post_push)."""

    schedule_id: uuid.UUID | None  # an existing, enabled schedule; None: create one from the task
    deadline_at: datetime | None  # None: no next run (a one-off report)
    cron: str | None = None  # written to the schedule when given


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
