"""The `Housekeeping` port in memory (`katsched.testing`): the sweeps and the retention job on the tables of
`MemoryTables` and the decisions of a `MemoryDecisionLog`, with the rules the SQL statements of
`katsched.store.maintenance` apply. The in-memory store keeps no daemon rows and no hourly counters, so there
is never one of those to prune."""

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from katsched._memory_schedules import MemoryDecisionLog
from katsched._memory_tables import Contents, MemoryTables, TaskRow
from katsched.core.models import TaskStatus
from katsched.core.transitions import LEASE_EXPIRED, TERMINAL


class MemoryHousekeeping:
    def __init__(self, tables: MemoryTables, decisions: MemoryDecisionLog) -> None:
        self.tables = tables
        self.decisions = decisions

    def requeue_lost_dispatches(
        self, scheduler_id: str, now: datetime, dispatch_timeout: timedelta, max_attempts: int
    ) -> list[uuid.UUID]:
        with self.tables.write() as contents:
            lost = [
                row
                for row in _in_status(contents, scheduler_id, TaskStatus.DISPATCHED)
                if row.task.modified_at < now - dispatch_timeout
                and row.dispatch_expiries + 1 < max_attempts
                and not any(twin.task.hash == row.task.hash for twin in contents.queued(scheduler_id))
            ]
            # One QUEUED task per identity: of lost twins only the newest is queued again.
            newest = {
                row.task.hash: row for row in sorted(lost, key=lambda r: (r.task.created_at, str(r.task.id)))
            }
            lost = [row for row in lost if newest[row.task.hash] is row]
            for row in lost:
                attempt = row.dispatch_expiries + 1
                reason = f"dispatch_lease_expired requeued attempt={attempt} max_attempts={max_attempts}"
                contents.set_status(replace(row, dispatch_expiries=attempt), TaskStatus.QUEUED, now, reason)
            return [row.task.id for row in lost]

    def sweep_expired_leases(
        self,
        scheduler_id: str,
        now: datetime,
        dispatch_timeout: timedelta,
        run_timeout: timedelta,
        dispatch_reason: str,
    ) -> list[uuid.UUID]:
        expiries = (
            (TaskStatus.DISPATCHED, dispatch_timeout, dispatch_reason),
            (TaskStatus.RUNNING, run_timeout, LEASE_EXPIRED),
        )
        swept: list[uuid.UUID] = []
        with self.tables.write() as contents:
            for status, timeout, reason in expiries:
                for row in _in_status(contents, scheduler_id, status):
                    if row.task.modified_at < now - timeout:
                        swept.append(contents.set_status(row, TaskStatus.FAILED, now, reason).id)
        return swept

    def prune_finished_tasks(self, older_than: datetime, batch_size: int) -> int:
        with self.tables.write() as contents:
            doomed = _finished_before(contents, older_than)[:batch_size]
            for task_id in doomed:
                del contents.tasks[task_id]
                contents.history.pop(task_id, None)  # the history goes with its task, as the cascade does
        return len(doomed)

    def prune_history(self, older_than: datetime, batch_size: int) -> int:
        deleted = 0
        with self.tables.write() as contents:
            for task_id, events in contents.history.items():
                kept = []
                for event in events:
                    if event[1] < older_than and deleted < batch_size:
                        deleted += 1
                    else:
                        kept.append(event)
                contents.history[task_id] = kept
        return deleted

    def prune_decisions(self, older_than: datetime, batch_size: int) -> int:
        return self.decisions.prune(older_than, batch_size)

    def prune_daemons(self, older_than: datetime) -> int:
        return 0  # no daemon rows are kept in memory

    def prune_hour_counts(self, older_than: datetime) -> int:
        return 0  # no hourly counters are kept in memory

    def count_prunable(
        self, tasks_before: datetime, history_before: datetime, daemons_before: datetime
    ) -> tuple[int, int, int]:
        with self.tables.read() as contents:
            doomed = set(_finished_before(contents, tasks_before))
            history = sum(
                1
                for task_id, events in contents.history.items()
                if task_id not in doomed
                for event in events
                if event[1] < history_before
            )
        return len(doomed), history, 0


def _in_status(contents: Contents, scheduler_id: str, status: TaskStatus) -> list[TaskRow]:
    return [
        row
        for row in contents.tasks.values()
        if row.task.scheduler_id == scheduler_id and row.task.status is status
    ]


def _finished_before(contents: Contents, older_than: datetime) -> list[uuid.UUID]:
    return [
        row.task.id
        for row in contents.tasks.values()
        if row.task.status in TERMINAL and row.task.modified_at < older_than
    ]


if TYPE_CHECKING:  # mypy proves that the in-memory housekeeping implements the port
    from katsched.core.ports import Housekeeping

    def _implements_port(housekeeping: MemoryHousekeeping) -> Housekeeping:
        return housekeeping
