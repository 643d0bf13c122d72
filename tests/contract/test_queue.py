"""The queue on a real SQLite file and on PostgreSQL: what only the database shows (the events table, SQL
conditions). The queue's semantics (SPEC §2) on every implementation: `test_store_contract_queue.py`."""

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from katsched.core.models import TaskStatus
from katsched.core.ports import TaskDraft
from katsched.errors import InvalidTransition
from katsched.store.queue import SqlTaskQueue
from katsched.store.tables import task_events
from katsched.testing import FakeClock

S = TaskStatus


def boefje(ooi: str, org: str = "org1", boefje_id: str = "dns-records", **extra: Any) -> dict[str, Any]:
    return {"boefje": {"id": boefje_id}, "input_ooi": ooi, "organization": org, **extra}


def report(recipe: str, org: str = "org1") -> dict[str, Any]:
    return {"report_recipe_id": recipe, "organisation_id": org}


@pytest.fixture
def queue(engine: Engine, clock: FakeClock) -> SqlTaskQueue:
    return SqlTaskQueue(engine, clock)


def push(
    queue: SqlTaskQueue,
    data: dict[str, Any],
    priority: int = 10,
    scheduler: str = "boefje",
    org: str = "org1",
):
    return queue.push(TaskDraft(scheduler, org, priority, data))


def test_status_changes_follow_the_table_and_are_recorded(
    queue: SqlTaskQueue, clock: FakeClock, engine: Engine
) -> None:
    task = push(queue, boefje("a"))
    with pytest.raises(InvalidTransition, match="from queued to running"):
        queue.set_status(task.id, S.RUNNING)
    clock.advance(timedelta(seconds=1))
    queue.pop("boefje")
    clock.advance(timedelta(seconds=1))
    running = queue.set_status(task.id, S.RUNNING)
    clock.advance(timedelta(seconds=1))
    heartbeat = queue.set_status(task.id, S.RUNNING)
    assert heartbeat.modified_at > running.modified_at
    done = queue.set_status(task.id, S.COMPLETED, reason="ok")
    with pytest.raises(InvalidTransition, match="allowed: none, the task is finished"):
        queue.set_status(task.id, S.QUEUED)
    assert done.status is S.COMPLETED
    history = queue.history(task.id)
    assert [status for status, _at, _reason in history] == [
        S.QUEUED,
        S.DISPATCHED,
        S.RUNNING,
        S.RUNNING,
        S.COMPLETED,
    ]
    assert history[-1][2] == "ok"
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(task_events)).scalar_one() == 5


def test_cancel_queued_touches_only_the_matching_organisation(queue: SqlTaskQueue) -> None:
    from katsched.store.tables import tasks

    mine = push(queue, boefje("Hostname|x"))
    theirs = push(queue, boefje("Hostname|x", org="org2"), org="org2")
    other = push(queue, boefje("Hostname|y"))
    cancelled = queue.cancel_queued(
        "boefje", "org1", [tasks.c.data["input_ooi"].as_string() == "Hostname|x"], "gone"
    )
    assert cancelled == [mine.id]
    assert queue.get(theirs.id).status is S.QUEUED and queue.get(other.id).status is S.QUEUED
    assert queue.history(mine.id)[-1][2] == "gone"
