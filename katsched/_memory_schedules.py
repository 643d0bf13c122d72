"""The `ScheduleStore`, `SeenPlugins` and `DecisionLog` ports in memory (`katsched.testing`), alike to the SQL
adapters as the contract suite (`tests/contract/test_store_contract.py`) proves."""

import copy
import threading
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from katsched._memory_filters import check_supported, matches
from katsched._memory_tables import Contents, MemoryTables
from katsched.clock import Clock
from katsched.core.models import Schedule
from katsched.core.ports import DecisionRecord, ScheduleClaim, SchedulePage, ScheduleQuery
from katsched.core.transitions import ACTIVE
from katsched.errors import NotAllowed, NotFound

# The fields `update` may change, as `katsched.store.schedules.EDITABLE`.
EDITABLE = frozenset({"hash", "data", "enabled", "schedule", "deadline_at", "organisation"})


class MemoryScheduleStore:
    """The `ScheduleStore` port in memory, with the schedule rows' create and reads a test needs beside it.
    Share its `MemoryTables` with the `MemoryTaskStore` whose tasks join the schedules."""

    def __init__(self, tables: MemoryTables, clock: Clock) -> None:
        self.tables = tables
        self.clock = clock

    # the ScheduleStore port

    def due(self, scheduler_id: str, limit: int, organisation: str | None = None) -> list[Schedule]:
        """Enabled schedules whose deadline has passed and that have no active task, oldest deadline first
        (claimed or not: a read)."""
        with self.tables.read() as contents:
            due = _due(contents, scheduler_id, organisation, self.clock.now())
        return [schedule.model_copy(deep=True) for schedule in due[:limit]]

    def claim_due(
        self, scheduler_id: str, limit: int, lease: timedelta, organisation: str | None = None
    ) -> ScheduleClaim:
        """Up to `limit` unclaimed due schedules, claimed for `lease` under the tables' lock, oldest first."""
        now = self.clock.now()
        claim = ScheduleClaim(uuid.uuid4(), now + lease)
        with self.tables.write() as contents:
            unclaimed = [
                schedule
                for schedule in _due(contents, scheduler_id, organisation, now)
                if schedule.id not in contents.claims or contents.claims[schedule.id][1] <= now
            ][:limit]
            for schedule in unclaimed:
                contents.claims[schedule.id] = (claim.token, claim.until)
        return replace(claim, schedules=[schedule.model_copy(deep=True) for schedule in unclaimed])

    def confirm(self, claim: ScheduleClaim, lease: timedelta) -> set[uuid.UUID]:
        until = self.clock.now() + lease
        with self.tables.write() as contents:
            held = {key for key in claim.ids if contents.claims.get(key, (None,))[0] == claim.token}
            for key in held:
                contents.claims[key] = (claim.token, until)
        return held

    def release(self, claim: ScheduleClaim) -> None:
        with self.tables.write() as contents:
            for key in claim.ids:
                if contents.claims.get(key, (None,))[0] == claim.token:
                    del contents.claims[key]

    def by_hashes(self, hashes: Collection[str]) -> dict[str, Schedule]:
        wanted = set(hashes)
        with self.tables.read() as contents:
            return {
                schedule.hash: schedule.model_copy(deep=True)
                for schedule in contents.schedules.values()
                if schedule.hash is not None and schedule.hash in wanted
            }

    def set_deadlines(self, deadlines: Mapping[uuid.UUID, datetime | None]) -> None:
        now = self.clock.now()
        with self.tables.write() as contents:
            for schedule_id, deadline in deadlines.items():
                self._change(contents.schedules, schedule_id, deadline_at=deadline, modified_at=now)

    def disable(self, schedule_ids: Collection[uuid.UUID]) -> None:
        now = self.clock.now()
        with self.tables.write() as contents:
            for schedule_id in set(schedule_ids):
                self._change(contents.schedules, schedule_id, enabled=False, modified_at=now)

    @staticmethod
    def _change(schedules: dict[uuid.UUID, Schedule], schedule_id: uuid.UUID, **changes: Any) -> None:
        found = schedules.get(schedule_id)
        if found is not None:  # an id that matches nothing changes nothing, as an UPDATE does
            schedules[schedule_id] = found.model_copy(update=changes)

    # the schedule rows (named as `katsched.store.schedules.SqlScheduleStore` names them)

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
    ) -> Schedule:
        now = self.clock.now()
        created = Schedule(
            scheduler_id=scheduler_id,
            organisation=organisation,
            hash=schedule_hash,
            data=copy.deepcopy(data),
            enabled=enabled,
            schedule=schedule,
            deadline_at=deadline_at,
            created_at=now,
            modified_at=now,
        )
        with self.tables.write() as contents:
            taken = {s.hash for s in contents.schedules.values()}
            if schedule_hash is not None and schedule_hash in taken:
                raise NotAllowed(f"schedule with the same hash already exists: {schedule_hash}")
            contents.schedules[created.id] = created
        return created.model_copy(deep=True)

    def get(self, schedule_id: uuid.UUID) -> Schedule:
        with self.tables.read() as contents:
            found = contents.schedules.get(schedule_id)
            if found is None:
                raise NotFound(f"schedule not found, by schedule_id: {schedule_id}")
            return found.model_copy(deep=True)

    def by_hash(self, schedule_hash: str) -> Schedule | None:
        return self.by_hashes([schedule_hash]).get(schedule_hash)

    def update(self, schedule_id: uuid.UUID, changes: Mapping[str, Any]) -> Schedule:
        """Apply `changes` to the editable fields, bumping modified_at."""
        unknown = set(changes) - EDITABLE
        if unknown:
            raise ValueError(f"cannot update schedule fields {sorted(unknown)}")
        with self.tables.write() as contents:
            found = contents.schedules.get(schedule_id)
            if found is None:
                raise NotFound(f"schedule not found, by schedule_id: {schedule_id}")
            new_hash = changes.get("hash")
            if new_hash is not None and any(
                s.hash == new_hash and s.id != schedule_id for s in contents.schedules.values()
            ):
                raise NotAllowed(f"schedule with the same hash already exists: {new_hash}")
            values = {**found.model_dump(), **copy.deepcopy(dict(changes)), "modified_at": self.clock.now()}
            updated = Schedule.model_validate(values)
            contents.schedules[schedule_id] = updated
            return updated.model_copy(deep=True)

    def delete(self, schedule_id: uuid.UUID) -> bool:
        """Remove a schedule; its tasks keep existing without one. False when there was nothing to delete."""
        with self.tables.write() as contents:
            for row in list(contents.tasks.values()):
                if row.task.schedule_id == schedule_id:
                    task = row.task.model_copy(update={"schedule_id": None})
                    contents.tasks[task.id] = replace(row, task=task)
            return contents.schedules.pop(schedule_id, None) is not None

    def list_schedules(self, query: ScheduleQuery) -> SchedulePage:
        """Schedules matching `query`, newest first (ties broken by id), with the count before pagination."""
        if query.filters is not None:
            check_supported(query.filters)
        with self.tables.read() as contents:
            found = [s for s in contents.schedules.values() if _matches_query(contents, s, query)]
            found.sort(key=lambda schedule: (schedule.created_at, schedule.id), reverse=True)
            end = None if query.limit is None else query.offset + query.limit
            page = [schedule.model_copy(deep=True) for schedule in found[query.offset : end]]
        return SchedulePage(count=len(found), schedules=page)

    def all_schedules(self, scheduler_id: str | None = None) -> list[Schedule]:
        """Every schedule (of one scheduler), newest first."""
        with self.tables.read() as contents:
            found = [
                schedule.model_copy(deep=True)
                for schedule in reversed(contents.schedules.values())
                if scheduler_id is None or schedule.scheduler_id == scheduler_id
            ]
        return sorted(found, key=lambda schedule: schedule.created_at, reverse=True)


def _due(contents: Contents, scheduler_id: str, organisation: str | None, now: datetime) -> list[Schedule]:
    """The scheduler's due schedules (of one organisation), oldest deadline first, ties by id."""
    busy = {
        row.task.schedule_id
        for row in contents.tasks.values()
        if row.task.schedule_id is not None and row.task.status in ACTIVE
    }
    due = [
        schedule
        for schedule in contents.schedules.values()
        if schedule.scheduler_id == scheduler_id
        and schedule.enabled
        and schedule.deadline_at is not None
        and schedule.deadline_at <= now
        and schedule.id not in busy
        and (organisation is None or schedule.organisation == organisation)
    ]
    return sorted(due, key=lambda schedule: (schedule.deadline_at or now, schedule.id))


def _matches_query(contents: Contents, schedule: Schedule, query: ScheduleQuery) -> bool:
    equalities: list[tuple[object, object]] = [
        (schedule.scheduler_id, query.scheduler_id),
        (schedule.organisation, query.organisation),
        (schedule.hash, query.hash),
    ]
    if any(wanted and found != wanted for found, wanted in equalities):
        return False
    if query.enabled is not None and schedule.enabled is not query.enabled:
        return False
    ranges = (
        (schedule.deadline_at, query.min_deadline_at, query.max_deadline_at),
        (schedule.created_at, query.min_created_at, query.max_created_at),
    )
    for value, low, high in ranges:
        if (low is not None or high is not None) and value is None:
            return False  # NULL is in no range, as in SQL
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            return False
    return query.filters is None or matches(query.filters, schedule, contents.related)


class MemorySeenPlugins:
    """The `SeenPlugins` port in memory: the boefjes enumerated per organisation, and since when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first_seen: dict[str, dict[str, datetime]] = {}

    def seen(self, organisation_id: str) -> set[str]:
        with self._lock:
            return set(self._first_seen.get(organisation_id, {}))

    def mark_seen(self, organisation_id: str, plugin_ids: Collection[str], at: datetime) -> None:
        """Record the plugins as seen; one seen before keeps its first `at`."""
        with self._lock:
            known = self._first_seen.setdefault(organisation_id, {})
            for plugin_id in plugin_ids:
                known.setdefault(plugin_id, at)

    def forget(self, organisation_id: str, plugin_ids: Collection[str]) -> None:
        with self._lock:
            known = self._first_seen.get(organisation_id, {})
            for plugin_id in plugin_ids:
                known.pop(plugin_id, None)


class MemoryDecisionLog:
    """The `DecisionLog` port in memory: the last decision per (organisation, subject, plugin)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str], DecisionRecord] = {}

    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        with self._lock:
            for decision in decisions:
                data = decision.subject_data
                kept = copy.deepcopy(dict(data)) if data is not None else None
                key = (decision.organisation, decision.subject, decision.plugin_id)
                self._last[key] = DecisionRecord(**{**vars(decision), "subject_data": kept})

    def prune(self, older_than: datetime, batch_size: int) -> int:
        """Forget up to `batch_size` decisions taken before `older_than`; how many."""
        with self._lock:
            old = [key for key, record in self._last.items() if record.decided_at < older_than][:batch_size]
            for key in old:
                del self._last[key]
            return len(old)

    def last(self, organisation: str, subject: str) -> dict[str, DecisionRecord]:
        with self._lock:
            return {
                plugin_id: record
                for (org, about, plugin_id), record in self._last.items()
                if (org, about) == (organisation, subject)
            }


if TYPE_CHECKING:  # mypy proves that the in-memory stores implement the ports
    from katsched.core import ports

    def _implement_ports(
        schedules: MemoryScheduleStore, seen: MemorySeenPlugins, decisions: MemoryDecisionLog
    ) -> tuple[ports.ScheduleStore, ports.ScheduleRegistry, ports.SeenPlugins, ports.DecisionLog]:
        return schedules, schedules, seen, decisions
