"""The task counters (migration 0007) equal a count of the tasks after every kind of write, from one process
and from several at once, on SQLite and PostgreSQL; the migration fills them from the rows already there."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from sqlalchemy import Engine, func, select, text

from katsched.core.models import TaskStatus
from katsched.core.ports import TaskDraft, TaskQuery
from katsched.store import counts
from katsched.store.engine import build_engine, read
from katsched.store.lookups import SqlTaskStore
from katsched.store.maintenance import prune_finished_tasks, prune_hour_counts, sweep_expired_leases
from katsched.store.migrate import _config, upgrade
from katsched.store.queue import SqlTaskQueue
from katsched.store.tables import task_counts, tasks
from katsched.store.types import hour_bucket
from katsched.testing import FakeClock

S = TaskStatus


def data(reference: str, org: str = "org1") -> dict[str, object]:
    return {"boefje": {"id": "dns-records"}, "input_ooi": reference, "organization": org}


def counted_by_scan(
    engine: Engine, since: datetime | None = None
) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], int]]:
    """The counts the counters must hold, by reading every task: per key, and per (hour, status) of the tasks
    modified from `since` on."""
    with read(engine) as connection:
        keys = select(tasks.c.scheduler_id, tasks.c.organisation, tasks.c.status, func.count()).group_by(
            tasks.c.scheduler_id, tasks.c.organisation, tasks.c.status
        )
        by_key = {(s, o, st): n for s, o, st, n in connection.execute(keys)}
        hour = hour_bucket(tasks.c.modified_at, connection.dialect.name)
        hours = select(hour, tasks.c.status, func.count()).group_by(hour, tasks.c.status)
        if since is not None:
            hours = hours.where(tasks.c.modified_at >= since)
        by_hour = {(h, st): n for h, st, n in connection.execute(hours)}
    return by_key, by_hour


def assert_counters_exact(engine: Engine, queue: SqlTaskQueue, since: datetime | None = None) -> None:
    by_key, by_hour = counted_by_scan(engine, since)
    assert {(s, o, st.value): n for s, o, st, n in queue.counts()} == by_key
    if since is None:
        oldest = min((counts.parse_hour(h) for h, _ in by_hour), default=None)
        if oldest is None:
            return
        since = oldest - timedelta(minutes=30)
    stats = queue.hourly_stats(since)
    assert {
        (counts.hour_key(h), st): n for h, c in stats.items() for st, n in c.items() if st != "total" and n
    } == (by_hour)


def test_counters_follow_every_kind_of_write(engine: Engine, clock: FakeClock) -> None:
    queue = SqlTaskQueue(engine, clock)
    store = SqlTaskStore(queue)
    pushed = [queue.push(TaskDraft("boefje", org, 5, data(f"h{i}", org))) for i, org in enumerate("aabbc")]
    store.push_many([TaskDraft("boefje", "a", 7, data(f"m{i}", "a")) for i in range(4)])
    assert_counters_exact(engine, queue)
    clock.advance(hours=1, minutes=10)
    popped = queue.pop("boefje", limit=3)
    queue.set_status(popped[0].id, S.RUNNING)
    queue.set_status(popped[0].id, S.RUNNING)  # a heartbeat in a later hour moves only the hourly count
    clock.advance(hours=2)
    queue.set_status(popped[0].id, S.RUNNING)
    queue.update(pushed[4].id, {"organisation": "d", "priority": 3})
    queue.cancel(pushed[3].id)
    store.cancel_queued_for_object("boefje", "a", "m1", "ooi_deleted")
    assert_counters_exact(engine, queue)
    clock.advance(hours=1)
    assert sweep_expired_leases(engine, "boefje", clock.now(), timedelta(minutes=1), timedelta(minutes=1))
    clock.advance(days=40)
    assert prune_finished_tasks(engine, clock.now() - timedelta(days=30), 100) > 0
    assert_counters_exact(engine, queue)
    assert prune_hour_counts(engine, clock.now() - timedelta(days=2)) > 0
    queue.push(TaskDraft("boefje", "a", 5, data("new", "a")))
    clock.advance(minutes=50)
    queue.pop("boefje", limit=2)  # one from 40 days ago, whose old hour is gone
    assert_counters_exact(engine, queue, since=clock.now() - timedelta(hours=24))
    queued = sum(n for (_, _, status), n in counted_by_scan(engine)[0].items() if status == "queued")
    assert queue.qsize("boefje") == queued > 0


def test_a_query_by_key_is_counted_from_the_counters_and_others_by_the_tasks(
    engine: Engine, clock: FakeClock
) -> None:
    queue = SqlTaskQueue(engine, clock)
    for i in range(3):
        queue.push(TaskDraft("boefje", "a", 5, data(f"h{i}", "a")))
    queue.push(TaskDraft("boefje", "b", 5, data("x", "b")))
    with engine.begin() as connection:  # a counter out of step shows which queries read it
        connection.execute(task_counts.update().where(task_counts.c.organisation == "a").values(n=30))
    assert queue.list_tasks(TaskQuery(organisation="a")).count == 30
    assert queue.list_tasks(TaskQuery(scheduler_id="boefje", status=S.QUEUED, limit=1)).count == 31
    assert queue.list_tasks(TaskQuery(input_ooi="h1")).count == 1
    assert queue.list_tasks(TaskQuery(type="boefje")).count == 4


WORKER = """
import random, sys
from katsched.clock import SystemClock
from katsched.store.engine import build_engine
from katsched.core.ports import TaskDraft, TaskQuery
from katsched.store.queue import SqlTaskQueue

queue = SqlTaskQueue(build_engine(sys.argv[1]), SystemClock())
name = sys.argv[2]
for i in range(150):
    org = random.choice(["org1", "org2", "org3"])
    data = {"boefje": {"id": "dns-records"}, "input_ooi": f"{name}-{i}", "organization": org}
    queue.push(TaskDraft("boefje", org, random.randint(2, 9), data))
    for task in queue.pop("boefje", limit=random.randint(0, 3)):
        if random.random() < 0.5:
            queue.set_status(task.id, "running")
"""


def test_counters_stay_exact_under_concurrent_pushes_and_pops_from_several_processes(
    engine: Engine, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, f"w{n}"], stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors
    queue = SqlTaskQueue(engine, FakeClock())
    by_key, _ = counted_by_scan(engine)
    assert sum(by_key.values()) == 600
    assert_counters_exact(engine, queue)


def test_the_migration_counts_the_tasks_already_there_and_makes_their_ranks_due(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine)
    command.downgrade(_config(engine), "0006")
    rows = [
        ("1" * 32, "completed", 9, "2026-01-01 00:00:00.000000"),  # the earlier run of the same work
        ("2" * 32, "queued", 500, "2026-01-02 10:30:00.000000"),  # ranked from it
        ("3" * 32, "queued", 1, "2026-01-02 11:00:00.000000"),  # manual (another identity: migration 0012)
        ("4" * 32, "dispatched", 400, "2026-01-02 11:30:00.000000"),
    ]
    with engine.begin() as connection:
        for task_id, status, priority, at in rows:
            connection.execute(
                text(
                    "INSERT INTO tasks (id, scheduler_id, organisation, priority, status, type, hash, data,"
                    " created_at, modified_at) VALUES (:id, 'boefje', 'org1', :priority, :status, 'boefje',"
                    " :hash, '{}', :at, :at)"
                ),
                {
                    "id": task_id,
                    "status": status,
                    "priority": priority,
                    "at": at,
                    "hash": "m" if priority == 1 else "h",
                },
            )
    upgrade(engine)
    queue = SqlTaskQueue(engine, FakeClock())
    assert_counters_exact(engine, queue)
    assert sorted(queue.counts()) == [
        ("boefje", "org1", S.COMPLETED, 1),
        ("boefje", "org1", S.DISPATCHED, 1),
        ("boefje", "org1", S.QUEUED, 2),
    ]
    due = SqlTaskStore(queue).ranks_due("boefje", "org1", datetime(2026, 2, 1, tzinfo=UTC), 10)
    assert [(r.priority, r.last_run_at.isoformat() if r.last_run_at else None) for r in due] == [
        (500, "2026-01-01T00:00:00+00:00")
    ]
