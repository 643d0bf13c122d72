"""Operator actions on many tasks at once: requeue, cancel, purge. Safe beside a running daemon.

Each change is a bounded batch, one ``UPDATE … WHERE id IN (SELECT … LIMIT n) AND status IN (…)`` statement
in its own transaction: on SQLite a batch holds the write lock only briefly, so the daemon's pops interleave;
on PostgreSQL the repeated status condition is re-checked on a row another transaction changed meanwhile
(a task popped while we wait is dispatched, no longer queued, and is left alone). A task is therefore either
popped or cancelled, never both, and the counts add up.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, exists, func, literal_column, or_, select, true, update
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.sql.util import ClauseAdapter

from katsched.clock import Clock
from katsched.core.filters import FilterExpr
from katsched.core.models import TaskStatus
from katsched.store.engine import read, write
from katsched.store.filters import compile_filter
from katsched.store.history import add_reason
from katsched.store.tables import tasks

BATCH_SIZE = 1000


@dataclass(frozen=True)
class Selection:
    """Which tasks an operator action applies to; every field narrows it."""

    statuses: frozenset[TaskStatus]
    scheduler_id: str | None = None
    organisation: str | None = None
    created_before: datetime | None = None
    filters: FilterExpr | None = None
    task_id: uuid.UUID | None = None

    def where(self) -> ColumnElement[bool]:
        """The condition over `tasks`."""
        conditions: list[ColumnElement[bool]] = [
            tasks.c.status.in_(sorted(status.value for status in self.statuses))
        ]
        equalities = {
            tasks.c.scheduler_id: self.scheduler_id,
            tasks.c.organisation: self.organisation,
            tasks.c.id: self.task_id,
        }
        conditions += [column == value for column, value in equalities.items() if value is not None]
        if self.created_before is not None:
            conditions.append(tasks.c.created_at < self.created_before)
        if self.filters is not None:
            conditions.append(compile_filter(self.filters, "task"))
        return and_(true(), *conditions)


Eligible = Callable[[FromClause, Selection], ColumnElement[bool]]


def _on(alias: FromClause, clause: ColumnElement[bool]) -> ColumnElement[bool]:
    adapted: ColumnElement[bool] = ClauseAdapter(alias).traverse(clause)
    return adapted


def selected(alias: FromClause, selection: Selection) -> ColumnElement[bool]:
    return _on(alias, selection.where())


def requeueable(alias: FromClause, selection: Selection) -> ColumnElement[bool]:
    """Selected, with no QUEUED twin (same scheduler and hash), and the newest of the selected tasks that
    share a hash: a requeue never makes two queued tasks of one identity."""
    twin = tasks.alias("twin")
    newer = tasks.alias("newer")
    same_identity_as = (twin.c.scheduler_id == alias.c.scheduler_id, twin.c.hash == alias.c.hash)
    queued_twin = exists().where(*same_identity_as, twin.c.status == literal_column("'queued'"))
    newer_sibling = exists().where(
        newer.c.scheduler_id == alias.c.scheduler_id,
        newer.c.hash == alias.c.hash,
        selected(newer, selection),
        or_(
            newer.c.modified_at > alias.c.modified_at,
            and_(newer.c.modified_at == alias.c.modified_at, newer.c.id > alias.c.id),
        ),
    )
    return and_(selected(alias, selection), ~queued_twin, ~newer_sibling)


def count(engine: Engine, selection: Selection, eligible: Eligible = selected) -> int:
    """How many tasks an action with `eligible` would change now."""
    candidate = tasks.alias("candidate")
    statement = select(func.count()).select_from(candidate).where(eligible(candidate, selection))
    with read(engine) as connection:
        return int(connection.execute(statement).scalar_one())


def change_status(
    engine: Engine,
    clock: Clock,
    selection: Selection,
    to: TaskStatus,
    reason: str,
    *,
    at_most: int,
    eligible: Eligible = selected,
    batch_size: int = BATCH_SIZE,
) -> list[uuid.UUID]:
    """Move up to `at_most` tasks `eligible` under `selection` to `to` (the number the operator agreed to),
    `batch_size` at a time; the ids moved. Each move is recorded in the task's history with `reason`. A
    requeue passes `eligible=requeueable`.

    Only an empty batch ends it early: on PostgreSQL a batch can come back short while more tasks match
    (rows a concurrent pop held were re-checked and skipped)."""
    changed: list[uuid.UUID] = []
    while len(changed) < at_most:
        size = min(batch_size, at_most - len(changed))
        batch = _change_batch(engine, clock.now(), selection, to, reason, eligible, size)
        if not batch:
            break
        changed += batch
    return changed


def _change_batch(
    engine: Engine,
    now: datetime,
    selection: Selection,
    to: TaskStatus,
    reason: str,
    eligible: Eligible,
    batch_size: int,
) -> list[uuid.UUID]:
    candidate = tasks.alias("candidate")
    ids = select(candidate.c.id).where(eligible(candidate, selection)).limit(batch_size)
    statement = (
        update(tasks)
        .where(tasks.c.id.in_(ids.scalar_subquery()), selection.where())
        .values(status=to.value, modified_at=now)
        .returning(tasks.c.id)
    )
    with write(engine) as connection:
        moved = list(connection.execute(statement).scalars())
        add_reason(connection, moved, to, now, reason)
    return moved
