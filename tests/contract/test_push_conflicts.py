"""A twin queued by another transaction after the push looked for one (issue 10): the push's INSERT meets it
on the unique index of migration 0012 and applies the push policy in the statement. The twin is written
through the push's own connection just before its INSERT, so the statement's conflict handling runs on both
dialects (on PostgreSQL the real race is tests/integration/test_concurrent_push.py)."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest
from sqlalchemy import Connection, Engine, insert

from katsched.core.hashing import task_hash
from katsched.core.models import BoefjeTask, PushPolicy, Task
from katsched.core.ports import PushOutcome, PushResult, TaskDraft
from katsched.store import push as push_module
from katsched.store.queue import SqlTaskQueue
from katsched.store.tables import tasks
from katsched.testing import FakeClock
from tests.world import ORG, boefje_data

TWIN_PRIORITY = 7


def draft(reference: str, priority: int = TWIN_PRIORITY) -> TaskDraft:
    return TaskDraft("boefje", ORG, priority, boefje_data("dns-records", reference))


def twin_row(reference: str, clock: FakeClock) -> dict[str, Any]:
    data = boefje_data("dns-records", reference)
    at = clock.now() - timedelta(minutes=5)
    identity = task_hash(BoefjeTask.model_validate(data))
    return {
        "id": uuid.UUID(data["id"]),
        "scheduler_id": "boefje",
        "organisation": ORG,
        "priority": TWIN_PRIORITY,
        "status": "queued",
        "type": "boefje",
        "hash": identity,
        "data": data,
        "created_at": at,
        "modified_at": at,
    }


@contextmanager
def twin_queued_before_insert(row: dict[str, Any]) -> Iterator[None]:
    """Write `row` in the push's transaction after its look-up for twins, right before it inserts tasks (as
    another process's push would land there on PostgreSQL)."""
    written: list[bool] = []
    run = push_module.fetch_batch

    def twin_first(connection: Connection, statement: Any, parameter_rows: Any) -> Any:
        if statement.table is tasks and not written:
            written.append(True)
            connection.execute(insert(tasks), row)
        return run(connection, statement, parameter_rows)

    with patch.object(push_module, "fetch_batch", twin_first):
        yield
    assert written, "the push inserted no task"


def push_meeting_twin(
    engine: Engine, clock: FakeClock, policy: PushPolicy, *drafts: TaskDraft
) -> tuple[list[PushOutcome], Task, SqlTaskQueue]:
    queue = SqlTaskQueue(engine, clock, {"boefje": policy})
    row = twin_row("a", clock)
    with twin_queued_before_insert(row):
        outcomes = queue.push_many(drafts)
    return outcomes, queue.get(row["id"]), queue


def test_a_policy_that_refuses_duplicates_refuses_the_draft_naming_the_twin(
    engine: Engine, clock: FakeClock
) -> None:
    (outcome, other), twin, queue = push_meeting_twin(engine, clock, PushPolicy(), draft("a", 3), draft("b"))
    assert outcome.result is PushResult.ALREADY_QUEUED and outcome.task is None
    assert outcome.twin_id == twin.id and outcome.refusal == "queue is not allowed to push items"
    assert twin.priority == TWIN_PRIORITY and twin.modified_at < clock.now()
    assert other.result is PushResult.PUSHED and other.task is not None
    assert {task.id for task in queue.peek("boefje", limit=10)} == {twin.id, other.task.id}
    assert queue.qsize("boefje") == 2
    assert [status for status, _, _ in queue.history(twin.id)] == ["queued"]


def test_a_policy_that_replaces_updates_the_twin_which_keeps_its_id(engine: Engine, clock: FakeClock) -> None:
    (outcome,), twin, queue = push_meeting_twin(engine, clock, PushPolicy(allow_replace=True), draft("a", 3))
    assert outcome.result is PushResult.PUSHED and outcome.task == twin
    assert (twin.priority, twin.data["id"], twin.modified_at) == (3, str(twin.id), clock.now())
    assert twin.created_at == clock.now() - timedelta(minutes=5)
    assert [task.id for task in queue.peek("boefje", limit=10)] == [twin.id]
    assert queue.qsize("boefje") == 1


@pytest.mark.parametrize(("priority", "result"), [(TWIN_PRIORITY, "already_queued"), (2, "pushed")])
def test_priority_updates_change_the_twin_only_for_another_priority(
    engine: Engine, clock: FakeClock, priority: int, result: str
) -> None:
    policy = PushPolicy(allow_priority_updates=True)
    (outcome,), twin, queue = push_meeting_twin(engine, clock, policy, draft("a", priority))
    assert outcome.result.value == result and twin.priority == priority
    assert queue.qsize("boefje") == 1


def test_data_updates_change_the_twin_whose_data_differs(engine: Engine, clock: FakeClock) -> None:
    (outcome,), twin, _ = push_meeting_twin(engine, clock, PushPolicy(allow_updates=True), draft("a", 4))
    assert outcome.task == twin and (twin.priority, twin.data["id"]) == (4, str(twin.id))
