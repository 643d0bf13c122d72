"""The queue's semantics (SPEC §2) on a real SQLite file and on PostgreSQL."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from katsched.core.models import PushPolicy, TaskStatus
from katsched.core.ports import TaskDraft, TaskQuery
from katsched.errors import InvalidItem, InvalidTransition, NotAllowed, NotFound, QueueFull
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


def test_push_queues_the_task_with_its_identity_hash(queue: SqlTaskQueue, clock: FakeClock) -> None:
    task = push(queue, boefje("Hostname|internet|example.com"))
    assert task.status is S.QUEUED
    assert task.hash == "74956880324db1838156e1ebf7847448"
    assert task.type == "boefje"
    assert str(task.id) == task.data["id"]
    assert task.created_at == task.modified_at == clock.now()
    assert queue.get(task.id) == task


def test_a_queued_duplicate_is_refused_until_it_leaves_the_queue(queue: SqlTaskQueue) -> None:
    first = push(queue, boefje("a"))
    with pytest.raises(NotAllowed, match="queue is not allowed to push items"):
        push(queue, boefje("a"), priority=3)
    push(queue, boefje("a", org="org2"), org="org2")  # another organisation is another identity
    push(queue, report("a"), scheduler="report")  # another scheduler is another queue
    assert [t.id for t in queue.pop("boefje")] == [first.id]
    assert push(queue, boefje("a")).status is S.QUEUED


@pytest.mark.parametrize(
    ("policy", "priority", "data"),
    [
        (PushPolicy(allow_replace=True), 10, boefje("a")),
        (PushPolicy(allow_priority_updates=True), 4, boefje("a")),
        (PushPolicy(allow_updates=True), 10, boefje("a", deduplication_key=str(uuid.UUID(int=7)))),
    ],
)
def test_push_policy_updates_the_queued_task_in_place(
    engine: Engine, clock: FakeClock, policy: PushPolicy, priority: int, data: dict[str, Any]
) -> None:
    queue = SqlTaskQueue(engine, clock, {"boefje": policy})
    first = push(queue, boefje("a"))
    clock.advance(timedelta(seconds=5))
    second = queue.push(TaskDraft("boefje", "org1", priority, {**data, "id": str(first.id)}))
    assert second.id == first.id
    assert second.priority == priority
    assert second.modified_at == clock.now()
    assert queue.qsize("boefje") == 1


@pytest.mark.parametrize("priority", [0, None])
def test_push_requires_a_priority(queue: SqlTaskQueue, priority: int | None) -> None:
    with pytest.raises(InvalidItem, match="priority"):
        queue.push(TaskDraft("boefje", "org1", priority, boefje("a")))
    assert queue.qsize("boefje") == 0


def test_push_validates_data_against_the_scheduler_and_knows_its_schedulers(queue: SqlTaskQueue) -> None:
    with pytest.raises(InvalidItem, match="NormalizerTask"):
        push(queue, boefje("a"), scheduler="normalizer")
    with pytest.raises(NotFound, match="Scheduler nope not found"):
        push(queue, boefje("a"), scheduler="nope")


def test_push_with_an_existing_task_id_is_refused(queue: SqlTaskQueue) -> None:
    first = push(queue, boefje("a"))
    queue.pop("boefje")
    with pytest.raises(NotAllowed, match=f"task with id {first.id} already exists"):
        queue.push(TaskDraft("boefje", "org1", 5, boefje("b", id=str(first.id))))


def test_maxsize_refuses_automatic_tasks_but_not_manual_ones(engine: Engine, clock: FakeClock) -> None:
    queue = SqlTaskQueue(engine, clock, {"boefje": PushPolicy(maxsize=2)})
    push(queue, boefje("a"))
    push(queue, boefje("b"))
    with pytest.raises(QueueFull):
        push(queue, boefje("c"))
    assert push(queue, boefje("c"), priority=1).status is S.QUEUED
    assert queue.qsize("boefje") == 3


def test_pop_serves_lowest_priority_then_oldest_and_returns_dispatched(
    queue: SqlTaskQueue, clock: FakeClock
) -> None:
    late_urgent = []
    for ooi, priority in [("a", 20), ("b", 10), ("c", 10), ("d", 30)]:
        late_urgent.append(push(queue, boefje(ooi), priority))
        clock.advance(timedelta(seconds=1))
    popped = queue.pop("boefje", limit=3)
    assert [t.data["input_ooi"] for t in popped] == ["b", "c", "a"]
    assert all(t.status is S.DISPATCHED and t.modified_at == clock.now() for t in popped)
    assert queue.get(popped[0].id).status is S.DISPATCHED
    assert [t.data["input_ooi"] for t in queue.pop("boefje", limit=10)] == ["d"]
    assert queue.pop("boefje", limit=10) == []


def test_pop_honours_the_limit_for_every_scheduler(queue: SqlTaskQueue) -> None:
    for i in range(5):
        push(queue, report(f"r{i}"), scheduler="report")
        push(queue, boefje(f"o{i}"))
    assert len(queue.pop("report", limit=4)) == 4
    assert len(queue.pop("boefje", limit=4)) == 4
    assert queue.pop("boefje", limit=0) == []


def test_pop_applies_filters(queue: SqlTaskQueue) -> None:
    from katsched.core.filters import parse_filter_request

    push(queue, boefje("a", boefje_id="nmap"))
    wanted = push(queue, boefje("b", boefje_id="dns-records"))
    document = {
        "filters": [{"column": "data", "field": "boefje__id", "operator": "in", "value": ["dns-records"]}]
    }
    popped = queue.pop("boefje", limit=5, filters=parse_filter_request(document, "task"))
    assert [t.id for t in popped] == [wanted.id]
    assert queue.qsize("boefje") == 1


def test_a_deduplication_group_is_handed_out_together_but_never_jumps_the_queue(
    queue: SqlTaskQueue, clock: FakeClock
) -> None:
    key = str(uuid.uuid4())
    urgent = push(queue, boefje("x"), priority=5)
    group = [
        push(queue, boefje("g", org=f"org{i}", deduplication_key=key), 50, org=f"org{i}") for i in range(3)
    ]
    other = push(queue, boefje("y"), priority=60)
    assert [t.id for t in queue.pop("boefje", limit=1)] == [urgent.id]
    assert {t.id for t in queue.pop("boefje", limit=10)} == {t.id for t in group}
    assert [t.id for t in queue.pop("boefje", limit=10)] == [other.id]


def test_a_group_is_capped_by_the_limit(queue: SqlTaskQueue) -> None:
    key = str(uuid.uuid4())
    for i in range(4):
        push(queue, boefje("g", org=f"org{i}", deduplication_key=key), 50, org=f"org{i}")
    push(queue, boefje("z"), priority=51)
    first = queue.pop("boefje", limit=3)
    assert len(first) == 3 and {t.data["deduplication_key"] for t in first} == {key}
    assert [t.data["deduplication_key"] for t in queue.pop("boefje", limit=3)] == [key]


def test_peek_shows_without_claiming(queue: SqlTaskQueue) -> None:
    task = push(queue, boefje("a"))
    assert [t.id for t in queue.peek("boefje")] == [task.id]
    assert queue.get(task.id).status is S.QUEUED


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


def test_a_dispatched_task_can_be_put_back_on_the_queue(queue: SqlTaskQueue) -> None:
    task = push(queue, boefje("a"))
    queue.pop("boefje")
    assert queue.set_status(task.id, S.QUEUED).status is S.QUEUED
    assert [t.id for t in queue.pop("boefje")] == [task.id]


def test_cancel_and_unknown_tasks(queue: SqlTaskQueue) -> None:
    task = push(queue, boefje("a"))
    assert queue.cancel(task.id).status is S.CANCELLED
    assert queue.pop("boefje") == []
    missing = uuid.uuid4()
    with pytest.raises(NotFound, match=f"task not found, by task_id: {missing}"):
        queue.get(missing)
    with pytest.raises(NotFound):
        queue.set_status(missing, S.CANCELLED)


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


def test_list_filters_paginates_and_counts(queue: SqlTaskQueue, clock: FakeClock) -> None:
    created = []
    for i in range(5):
        created.append(
            push(queue, boefje(f"ooi{i}", org="org1" if i % 2 else "org2"), org="org1" if i % 2 else "org2")
        )
        clock.advance(timedelta(minutes=1))
    page = queue.list_tasks(TaskQuery(limit=2))
    assert page.count == 5 and [t.id for t in page.tasks] == [created[4].id, created[3].id]
    assert queue.list_tasks(TaskQuery(organisation="org1")).count == 2
    assert [t.id for t in queue.list_tasks(TaskQuery(input_ooi="ooi3")).tasks] == [created[3].id]
    window = TaskQuery(min_created_at=created[1].created_at, max_created_at=created[2].created_at)
    assert {t.id for t in queue.list_tasks(window).tasks} == {created[1].id, created[2].id}
    assert queue.list_tasks(TaskQuery(limit=0)).count == 5
    queue.pop("boefje")
    assert queue.list_tasks(TaskQuery(status=S.DISPATCHED)).count == 1


def test_counts_and_hourly_stats(queue: SqlTaskQueue, clock: FakeClock) -> None:
    push(queue, boefje("a"))
    push(queue, report("r"), scheduler="report")
    clock.advance(timedelta(hours=1))
    queue.pop("boefje")
    assert sorted(queue.counts()) == [("boefje", "org1", S.DISPATCHED, 1), ("report", "org1", S.QUEUED, 1)]
    stats = queue.hourly_stats(clock.now() - timedelta(days=1))
    hours = list(stats)
    assert hours == sorted(hours, reverse=True) and len(hours) == 2
    assert stats[hours[0]]["dispatched"] == 1 and stats[hours[0]]["total"] == 1
    assert stats[hours[1]]["queued"] == 1
    assert queue.hourly_stats(clock.now() - timedelta(days=1), scheduler_id="report")[hours[1]]["total"] == 1
