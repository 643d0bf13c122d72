"""Lease sweep and retention pruning (SPEC §2), driven by the clock, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import Engine, delete, func, select

from katsched.clock import SystemClock
from katsched.core.models import TaskStatus
from katsched.core.ports import TaskDraft, TaskQuery
from katsched.schedulers.sweeps import LeaseTimeouts, RetentionPolicy, prune_retention, sweep_stalled
from katsched.store.daemon_state import DaemonState, DaemonStateStore
from katsched.store.maintenance import SqlHousekeeping
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.store.tables import daemon_state, task_events
from katsched.testing import FakeClock

S = TaskStatus
TEN_MINUTES, HALF_AN_HOUR = timedelta(minutes=10), timedelta(minutes=30)
LEASES = {  # runners that buffer popped tasks: a dispatch lease that runs out fails the task
    "boefje": LeaseTimeouts(TEN_MINUTES, HALF_AN_HOUR, on_dispatch_expiry="fail"),
    "normalizer": LeaseTimeouts(TEN_MINUTES, HALF_AN_HOUR, on_dispatch_expiry="fail"),
}
REQUEUE = {"boefje": LeaseTimeouts(TEN_MINUTES, HALF_AN_HOUR)}  # the default: requeue, 3 attempts


def boefje(ooi: str, org: str = "org1") -> dict[str, Any]:
    return {"boefje": {"id": "dns-records"}, "input_ooi": ooi, "organization": org}


@pytest.fixture
def queue(engine: Engine, clock: FakeClock) -> SqlTaskQueue:
    with engine.begin() as connection:
        connection.execute(delete(daemon_state))
    return SqlTaskQueue(engine, clock)


def push(queue: SqlTaskQueue, ooi: str, schedule_id: Any = None) -> Any:
    return queue.push(TaskDraft("boefje", "org1", 10, boefje(ooi), schedule_id=schedule_id))


def test_dispatched_and_silent_running_tasks_are_swept_to_failed(
    queue: SqlTaskQueue, engine: Engine, clock: FakeClock
) -> None:
    for ooi in ("a", "b", "c"):
        push(queue, ooi)
    never_started, started, heartbeating = queue.pop("boefje", limit=3)
    queue.set_status(started.id, S.RUNNING)
    queue.set_status(heartbeating.id, S.RUNNING)

    clock.advance(minutes=11)
    assert sweep_stalled(SqlHousekeeping(engine), clock, LEASES).swept["boefje"] == [never_started.id]
    queue.set_status(heartbeating.id, S.RUNNING)  # the runner's heartbeat: a re-PATCH of the same status

    clock.advance(minutes=20)  # `started` has been silent for 31 minutes, `heartbeating` for 20
    summary = sweep_stalled(SqlHousekeeping(engine), clock, LEASES)
    assert summary.swept == {"boefje": [started.id], "normalizer": []}
    assert summary.log_line() == "lease_sweep swept=1 requeued=0 per_scheduler=boefje:1"
    assert queue.get(never_started.id).status is S.FAILED
    assert queue.get(started.id).status is S.FAILED
    assert queue.get(heartbeating.id).status is S.RUNNING
    assert queue.history(started.id)[-1][0] is S.FAILED
    assert queue.history(started.id)[-1][2] == "lease_expired"


def test_a_lost_dispatch_is_queued_again_until_max_attempts_then_failed(
    queue: SqlTaskQueue, engine: Engine, clock: FakeClock
) -> None:
    task = push(queue, "a")
    for attempt in (1, 2):
        assert [popped.id for popped in queue.pop("boefje")] == [task.id]
        clock.advance(minutes=11)
        summary = sweep_stalled(SqlHousekeeping(engine), clock, REQUEUE)
        assert (summary.requeued["boefje"], summary.swept["boefje"]) == ([task.id], [])
        assert queue.get(task.id).status is S.QUEUED
        assert queue.history(task.id)[-1][2] == (
            f"dispatch_lease_expired requeued attempt={attempt} max_attempts=3"
        )
    queue.pop("boefje")
    clock.advance(minutes=11)
    summary = sweep_stalled(SqlHousekeeping(engine), clock, REQUEUE)
    assert (summary.requeued["boefje"], summary.swept["boefje"]) == ([], [task.id])
    assert queue.get(task.id).status is S.FAILED
    statuses = [(status, reason) for status, _, reason in queue.history(task.id)]
    assert statuses == [
        (S.QUEUED, None),
        (S.DISPATCHED, None),
        (S.QUEUED, "dispatch_lease_expired requeued attempt=1 max_attempts=3"),
        (S.DISPATCHED, None),
        (S.QUEUED, "dispatch_lease_expired requeued attempt=2 max_attempts=3"),
        (S.DISPATCHED, None),
        (S.FAILED, "dispatch_lease_expired attempts=3"),
    ]


def test_requeue_leaves_running_leases_and_queued_twins_to_failing(
    queue: SqlTaskQueue, engine: Engine, clock: FakeClock
) -> None:
    lost, started = push(queue, "a"), push(queue, "b")
    queue.pop("boefje", limit=2)
    queue.set_status(started.id, S.RUNNING)
    twin = push(queue, "a")  # the same work, pushed again while the first was out
    clock.advance(minutes=31)
    summary = sweep_stalled(SqlHousekeeping(engine), clock, REQUEUE)
    assert summary.requeued["boefje"] == []
    assert sorted(summary.swept["boefje"]) == sorted([lost.id, started.id])
    assert queue.get(twin.id).status is S.QUEUED
    assert queue.history(started.id)[-1][2] == "lease_expired"


def test_queued_tasks_and_other_schedulers_are_left_alone(
    queue: SqlTaskQueue, engine: Engine, clock: FakeClock
) -> None:
    push(queue, "a")
    clock.advance(days=3)
    assert sweep_stalled(SqlHousekeeping(engine), clock, LEASES).total == 0
    assert sweep_stalled(SqlHousekeeping(engine), clock, {}).total == 0


def test_a_swept_task_frees_its_schedule(queue: SqlTaskQueue, engine: Engine, clock: FakeClock) -> None:
    schedules = SqlScheduleStore(engine, clock)
    schedule = schedules.create("boefje", "org1", boefje("a"), "a" * 32, deadline_at=clock.now())
    push(queue, "a", schedule_id=schedule.id)
    queue.pop("boefje")
    assert schedules.due("boefje", 10) == []
    clock.advance(minutes=11)
    sweep_stalled(SqlHousekeeping(engine), clock, LEASES)
    assert [due.id for due in schedules.due("boefje", 10)] == [schedule.id]


def finish(queue: SqlTaskQueue, ooi: str, status: TaskStatus = S.COMPLETED) -> Any:
    task = push(queue, ooi)
    queue.pop("boefje")
    return queue.set_status(task.id, status)


def test_retention_prunes_old_finished_tasks_in_bounded_batches(
    queue: SqlTaskQueue, engine: Engine, clock: FakeClock
) -> None:
    waiting = queue.push(
        TaskDraft("report", "org1", 10, {"report_recipe_id": "r1", "organisation_id": "org1"})
    )
    old = [finish(queue, f"old{i}", S.COMPLETED if i % 2 else S.FAILED) for i in range(5)]
    clock.advance(days=20)
    recent = finish(queue, "recent")
    clock.advance(days=11)  # the old ones are 31 days old, the recent one 11
    policy = RetentionPolicy(tasks_days=30, history_days=365, batch_size=2, max_batches=2)

    first = prune_retention(SqlHousekeeping(engine), clock, policy)
    assert (first.tasks, first.complete) == (4, False)
    second = prune_retention(SqlHousekeeping(engine), clock, policy)
    assert (second.tasks, second.complete) == (1, True)

    remaining = {task.id for task in queue.list_tasks(TaskQuery(organisation="org1", limit=None)).tasks}
    assert remaining == {waiting.id, recent.id}
    assert not {task.id for task in old} & remaining
    with engine.connect() as connection:  # their history went with them
        orphans = connection.execute(
            select(func.count()).where(task_events.c.task_id.in_([task.id for task in old]))
        )
        assert orphans.scalar_one() == 0


def test_retention_prunes_history_on_its_own_schedule(
    queue: SqlTaskQueue, engine: Engine, clock: FakeClock
) -> None:
    task = push(queue, "a")
    clock.advance(days=8)
    queue.pop("boefje")
    clock.advance(days=1)
    summary = prune_retention(
        SqlHousekeeping(engine), clock, RetentionPolicy(tasks_days=30, history_days=7, batch_size=100)
    )
    assert (summary.tasks, summary.history) == (0, 1)
    assert [status for status, _, _ in queue.history(task.id)] == [S.DISPATCHED]
    assert summary.log_line() == "retention_pruned tasks=0 history=1 decisions=0 daemons=0 complete=true"


def test_retention_forgets_daemons_silent_for_longer_than_the_history(
    queue: SqlTaskQueue, engine: Engine, clock: FakeClock
) -> None:
    states = DaemonStateStore(engine)
    states.register(DaemonState("old:1", "old", 1, "0.1.0", clock.now(), clock.now()))
    clock.advance(days=40)
    states.register(DaemonState("new:2", "new", 2, "0.1.0", clock.now(), clock.now()))
    summary = prune_retention(
        SqlHousekeeping(engine), clock, RetentionPolicy(tasks_days=30, history_days=30, batch_size=100)
    )
    assert summary.daemons == 1
    assert [state.id for state in states.instances()] == ["new:2"]


def test_retention_with_the_system_clock_under_freezegun(queue: SqlTaskQueue, engine: Engine) -> None:
    with freeze_time("2026-11-01 12:00:00", tz_offset=0) as frozen:
        system = SqlTaskQueue(engine, SystemClock())
        task = system.push(TaskDraft("boefje", "org1", 10, boefje("frozen")))
        system.pop("boefje")
        system.set_status(task.id, S.COMPLETED)
        frozen.move_to(datetime(2026, 12, 2, 12, 0, 1, tzinfo=UTC))
        summary = prune_retention(SqlHousekeeping(engine), SystemClock(), RetentionPolicy(30, 365, 100))
    assert summary.tasks == 1
