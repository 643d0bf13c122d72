"""Schedule rows: the blueprints of recurring tasks, and which of them are due."""

import uuid
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.sql.elements import BindParameter

from katsched.clock import Clock
from katsched.core.models import Schedule
from katsched.core.ports import ScheduleClaim, SchedulePage, ScheduleQuery
from katsched.core.transitions import ACTIVE
from katsched.errors import NotAllowed, NotFound
from katsched.store.engine import read, write
from katsched.store.filters import compile_filter
from katsched.store.lookups import chunks
from katsched.store.schedule_links import schedules_by_hashes, to_schedule
from katsched.store.tables import schedules, tasks

EDITABLE = frozenset({"hash", "data", "enabled", "schedule", "deadline_at", "organisation"})
_SET_DEADLINE = (
    update(schedules)
    .where(schedules.c.id == bindparam("_id"))
    .values(deadline_at=bindparam("_deadline_at"), modified_at=bindparam("_now"))
)


_NOW = bindparam("now", type_=schedules.c.deadline_at.type)
_UNTIL = bindparam("until", type_=schedules.c.claimed_until.type)
_TOKEN = bindparam("token", type_=schedules.c.claimed_by.type)
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_CONFIRM = (
    update(schedules)
    .where(schedules.c.id.in_(_IDS), schedules.c.claimed_by == _TOKEN)
    .values(claimed_until=_UNTIL)
    .returning(schedules.c.id)
)
_RELEASE = (
    update(schedules)
    .where(schedules.c.id.in_(_IDS), schedules.c.claimed_by == _TOKEN)
    .values(claimed_by=None, claimed_until=None)
)


def _due_conditions(
    scheduler_id: str, organisation: str | None, table: FromClause = schedules
) -> list[ColumnElement[bool]]:
    conditions = [
        table.c.scheduler_id == scheduler_id,
        table.c.enabled.is_(True),
        table.c.deadline_at <= _NOW,
        ~has_active_task(table),
    ]
    if organisation is not None:
        conditions.append(table.c.organisation == organisation)
    return conditions


def _oldest_first_in(table: FromClause) -> tuple[ColumnElement[Any], ...]:
    return (table.c.deadline_at.asc(), table.c.id)


def _claim(dialect: str, scheduler_id: str, organisation: str | None) -> Update:
    """One statement claims the batch: on PostgreSQL the rows another claimant is locking right now are
    skipped (and one whose claim that other commits is then no longer unclaimed, as the recheck of the locked
    row sees); on SQLite the write transaction is the only one (BEGIN IMMEDIATE)."""
    due = schedules.alias("due")
    unclaimed = or_(due.c.claimed_until.is_(None), due.c.claimed_until <= _NOW)
    batch = (
        select(due.c.id)
        .where(*_due_conditions(scheduler_id, organisation, due), unclaimed)
        .order_by(*_oldest_first_in(due))
        .limit(bindparam("limit", type_=Integer))
    )
    if dialect == "postgresql":
        batch = batch.with_for_update(skip_locked=True)
    return (
        update(schedules)
        .where(schedules.c.id.in_(batch.scalar_subquery()))
        .values(claimed_by=_TOKEN, claimed_until=_UNTIL)
        .returning(*schedules.c)
    )


def has_active_task(table: FromClause = schedules) -> ColumnElement[bool]:
    """The schedule has a task that is still pending, queued, dispatched or running."""
    return exists().where(tasks.c.schedule_id == table.c.id, tasks.c.status.in_([s.value for s in ACTIVE]))


class SqlScheduleStore:
    """The schedule ports on SQLite or PostgreSQL: `ScheduleRegistry` (the API's and the CLI's edits) and
    `ScheduleStore` (the planners' lookups)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

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
        row = {
            "id": uuid.uuid4(),
            "scheduler_id": scheduler_id,
            "organisation": organisation,
            "hash": schedule_hash,
            "data": data,
            "enabled": enabled,
            "schedule": schedule,
            "deadline_at": deadline_at,
            "created_at": now,
            "modified_at": now,
        }
        with write(self.engine) as connection:
            self._refuse_duplicate_hash(connection, schedule_hash)
            connection.execute(insert(schedules), row)
        return Schedule.model_validate(row)

    def _refuse_duplicate_hash(
        self, connection: Connection, schedule_hash: str | None, own_id: uuid.UUID | None = None
    ) -> None:
        if schedule_hash is None:
            return
        others = select(schedules.c.id).where(schedules.c.hash == schedule_hash, schedules.c.id != own_id)
        if connection.execute(others).first():
            raise NotAllowed(f"schedule with the same hash already exists: {schedule_hash}")

    def get(self, schedule_id: uuid.UUID) -> Schedule:
        found = self._first(schedules.c.id == schedule_id)
        if found is None:
            raise NotFound(f"schedule not found, by schedule_id: {schedule_id}")
        return found

    def by_hash(self, schedule_hash: str) -> Schedule | None:
        return self._first(schedules.c.hash == schedule_hash)

    def _first(self, condition: ColumnElement[bool]) -> Schedule | None:
        with read(self.engine) as connection:
            row = connection.execute(select(schedules).where(condition)).first()
        return to_schedule(row) if row is not None else None

    def update(self, schedule_id: uuid.UUID, changes: Mapping[str, Any]) -> Schedule:
        """Apply `changes` to the editable fields, bumping modified_at."""
        unknown = set(changes) - EDITABLE
        if unknown:
            raise ValueError(f"cannot update schedule fields {sorted(unknown)}")
        statement = (
            update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(**changes, modified_at=self.clock.now())
            .returning(*schedules.c)
        )
        with write(self.engine) as connection:
            if changes.get("hash") is not None:
                self._refuse_duplicate_hash(connection, changes["hash"], schedule_id)
            row = connection.execute(statement).first()
        if row is None:
            raise NotFound(f"schedule not found, by schedule_id: {schedule_id}")
        return to_schedule(row)

    def delete(self, schedule_id: uuid.UUID) -> bool:
        """Remove a schedule; its tasks keep existing without one. False when there was nothing to delete."""
        with write(self.engine) as connection:
            connection.execute(
                update(tasks).where(tasks.c.schedule_id == schedule_id).values(schedule_id=None)
            )
            return bool(connection.execute(delete(schedules).where(schedules.c.id == schedule_id)).rowcount)

    def list_schedules(self, query: ScheduleQuery) -> SchedulePage:
        where = and_(true(), *_query_conditions(query))
        # The id breaks ties between schedules created in one transaction, so offset pages never overlap.
        newest_first = (schedules.c.created_at.desc(), schedules.c.id.desc())
        statement = select(schedules).where(where).order_by(*newest_first).offset(query.offset)
        if query.limit is not None:
            statement = statement.limit(query.limit)
        with read(self.engine) as connection:
            count = int(
                connection.execute(select(func.count()).select_from(schedules).where(where)).scalar_one()
            )
            found = [to_schedule(row) for row in connection.execute(statement)] if query.limit != 0 else []
        return SchedulePage(count=count, schedules=found)

    def due(self, scheduler_id: str, limit: int, organisation: str | None = None) -> list[Schedule]:
        """Enabled schedules whose deadline has passed and that have no active task, oldest deadline first
        (claimed or not: a read)."""
        conditions = _due_conditions(scheduler_id, organisation)
        statement = select(schedules).where(*conditions).order_by(*_oldest_first_in(schedules)).limit(limit)
        with read(self.engine) as connection:
            return [to_schedule(row) for row in connection.execute(statement, {"now": self.clock.now()})]

    def claim_due(
        self, scheduler_id: str, limit: int, lease: timedelta, organisation: str | None = None
    ) -> ScheduleClaim:
        """Up to `limit` unclaimed due schedules, claimed for `lease` in one statement, oldest first."""
        now = self.clock.now()
        claim = ScheduleClaim(uuid.uuid4(), now + lease)
        statement = _claim(self.engine.dialect.name, scheduler_id, organisation)
        parameters = {"now": now, "until": claim.until, "token": claim.token, "limit": limit}
        with write(self.engine) as connection:
            rows = connection.execute(statement, parameters).all()
        claimed = sorted((to_schedule(row) for row in rows), key=_oldest_first)
        return ScheduleClaim(claim.token, claim.until, claimed)

    def confirm(self, claim: ScheduleClaim, lease: timedelta) -> set[uuid.UUID]:
        held: set[uuid.UUID] = set()
        until = self.clock.now() + lease
        with write(self.engine) as connection:
            for chunk in chunks(claim.ids):
                parameters = {"ids": chunk, "token": claim.token, "until": until}
                held.update(connection.execute(_CONFIRM, parameters).scalars())
        return held

    def release(self, claim: ScheduleClaim) -> None:
        if not claim.schedules:
            return
        with write(self.engine) as connection:
            for chunk in chunks(claim.ids):
                connection.execute(_RELEASE, {"ids": chunk, "token": claim.token})

    def by_hashes(self, hashes: Collection[str]) -> dict[str, Schedule]:
        if not hashes:
            return {}
        with read(self.engine) as connection:
            return schedules_by_hashes(connection, set(hashes))

    def set_deadlines(self, deadlines: Mapping[uuid.UUID, datetime | None]) -> None:
        if not deadlines:
            return
        now = self.clock.now()
        rows = [{"_id": key, "_deadline_at": deadline, "_now": now} for key, deadline in deadlines.items()]
        with write(self.engine) as connection:
            connection.execute(_SET_DEADLINE, rows)

    def disable(self, schedule_ids: Collection[uuid.UUID]) -> None:
        now = self.clock.now()
        with write(self.engine) as connection:
            for chunk in chunks(set(schedule_ids)):
                statement = (
                    update(schedules).where(schedules.c.id.in_(chunk)).values(enabled=False, modified_at=now)
                )
                connection.execute(statement)


def _oldest_first(schedule: Schedule) -> tuple[datetime, uuid.UUID]:
    assert schedule.deadline_at is not None  # a claimed schedule is due: it has a deadline
    return (schedule.deadline_at, schedule.id)


def _query_conditions(query: ScheduleQuery) -> list[ColumnElement[bool]]:
    equalities = {
        schedules.c.scheduler_id: query.scheduler_id,
        schedules.c.organisation: query.organisation,
        schedules.c.hash: query.hash,
    }
    conditions: list[ColumnElement[bool]] = [column == value for column, value in equalities.items() if value]
    if query.enabled is not None:
        conditions.append(schedules.c.enabled.is_(query.enabled))
    ranges = (
        (schedules.c.deadline_at, query.min_deadline_at, query.max_deadline_at),
        (schedules.c.created_at, query.min_created_at, query.max_created_at),
    )
    for column, low, high in ranges:
        if low is not None:
            conditions.append(column >= low)
        if high is not None:
            conditions.append(column <= high)
    if query.filters is not None:
        conditions.append(compile_filter(query.filters, "schedule"))
    return conditions


if TYPE_CHECKING:  # mypy proves that the adapter implements the ports
    from katsched.core import ports

    def _implements_ports(store: SqlScheduleStore) -> tuple[ports.ScheduleRegistry, ports.ScheduleStore]:
        return store, store
