"""Housekeeping the recurring jobs run: sweeping tasks whose lease ran out, and pruning old rows.

Both take `now` from the injected clock, so tests move time instead of waiting for it. Pruning deletes in
bounded batches, each its own transaction, so a large backlog never holds the write lock for long; what one
run leaves behind, the next one takes.
"""

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from katsched.clock import Clock
from katsched.core.ports import Housekeeping
from katsched.core.transitions import LEASE_EXPIRED

log = logging.getLogger("katsched.sweeps")

MAX_BATCHES_PER_RUN = 100
HOURLY_COUNTS_KEPT = timedelta(days=2)  # /tasks/stats looks back 24 hours


DispatchExpiry = Literal["requeue", "fail"]


@dataclass(frozen=True)
class LeaseTimeouts:
    """A scheduler's leases, and what becomes of a dispatched task whose runner never started it: queued
    again (at least once delivery, for a pop answer lost with a connection or a daemon) until `max_attempts`
    dispatches were lost, or failed at once (for runners that hold popped tasks longer than the lease)."""

    dispatch_timeout: timedelta
    run_timeout: timedelta
    on_dispatch_expiry: DispatchExpiry = "requeue"
    max_attempts: int = 3


@dataclass(frozen=True)
class RetentionPolicy:
    tasks_days: int
    history_days: int
    batch_size: int
    max_batches: int = MAX_BATCHES_PER_RUN


@dataclass
class SweepSummary:
    swept: dict[str, list[uuid.UUID]] = field(default_factory=dict)  # failed
    requeued: dict[str, list[uuid.UUID]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in (*self.swept.values(), *self.requeued.values()))

    def log_line(self) -> str:
        counts = ",".join(f"{name}:{len(ids)}" for name, ids in sorted(self.swept.items()) if ids) or "-"
        requeued = sum(len(ids) for ids in self.requeued.values())
        return f"lease_sweep swept={self.total} requeued={requeued} per_scheduler={counts}"


@dataclass
class PruneSummary:
    tasks: int = 0
    history: int = 0
    decisions: int = 0
    daemons: int = 0
    complete: bool = True  # False: the batch limit was reached, the next run continues

    def log_line(self) -> str:
        return (
            f"retention_pruned tasks={self.tasks} history={self.history} decisions={self.decisions} "
            f"daemons={self.daemons} "
            f"complete={str(self.complete).lower()}"
        )


def sweep_stalled(store: Housekeeping, clock: Clock, timeouts: Mapping[str, LeaseTimeouts]) -> SweepSummary:
    """In each scheduler, queue again or fail each DISPATCHED task whose lease ran out (as its policy says),
    and fail each RUNNING one whose runner went silent; one log line per task."""
    now = clock.now()
    summary = SweepSummary()
    for scheduler_id, lease in timeouts.items():
        requeued: list[uuid.UUID] = []
        dispatch_reason = LEASE_EXPIRED
        if lease.on_dispatch_expiry == "requeue":
            requeued = store.requeue_lost_dispatches(
                scheduler_id, now, lease.dispatch_timeout, lease.max_attempts
            )
            dispatch_reason = f"dispatch_lease_expired attempts={lease.max_attempts}"
        swept = store.sweep_expired_leases(
            scheduler_id, now, lease.dispatch_timeout, lease.run_timeout, dispatch_reason
        )
        summary.requeued[scheduler_id], summary.swept[scheduler_id] = requeued, swept
        for task_id in requeued:
            log.warning(
                "task_requeued task_id=%s scheduler=%s reason=dispatch_lease_expired", task_id, scheduler_id
            )
        for task_id in swept:
            log.warning("task_swept task_id=%s scheduler=%s reason=%s", task_id, scheduler_id, LEASE_EXPIRED)
    return summary


def _cutoffs(clock: Clock, policy: RetentionPolicy) -> tuple[datetime, datetime]:
    now = clock.now()
    return now - timedelta(days=policy.tasks_days), now - timedelta(days=policy.history_days)


def prunable(store: Housekeeping, clock: Clock, policy: RetentionPolicy) -> PruneSummary:
    """What `prune_retention` would delete now, without deleting it (`katsched db prune --dry-run`)."""
    task_cutoff, history_cutoff = _cutoffs(clock, policy)
    tasks, history, daemons = store.count_prunable(task_cutoff, history_cutoff, history_cutoff)
    return PruneSummary(tasks=tasks, history=history, daemons=daemons)


def prune_retention(store: Housekeeping, clock: Clock, policy: RetentionPolicy) -> PruneSummary:
    """Delete finished tasks and history older than the retention policy, at most `max_batches` per kind."""
    now = clock.now()
    task_cutoff, history_cutoff = _cutoffs(clock, policy)
    tasks, tasks_done = _in_batches(
        lambda: store.prune_finished_tasks(task_cutoff, policy.batch_size), policy
    )
    history, history_done = _in_batches(
        lambda: store.prune_history(history_cutoff, policy.batch_size), policy
    )
    # The last decisions are history too: kept as long as the status history they explain.
    decided, decisions_done = _in_batches(
        lambda: store.prune_decisions(history_cutoff, policy.batch_size), policy
    )
    daemons = store.prune_daemons(history_cutoff)
    store.prune_hour_counts(now - HOURLY_COUNTS_KEPT)
    return PruneSummary(
        tasks=tasks,
        history=history,
        decisions=decided,
        daemons=daemons,
        complete=tasks_done and history_done and decisions_done,
    )


def _in_batches(batch: Callable[[], int], policy: RetentionPolicy) -> tuple[int, bool]:
    """Run `batch` until it deletes less than a full batch, or the limit is reached; (deleted, finished)."""
    total = 0
    for _ in range(policy.max_batches):
        deleted = batch()
        total += deleted
        if deleted < policy.batch_size:
            return total, True
    return total, False
