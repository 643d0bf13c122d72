"""The store contract suite, the API's and the CLI's ports: `TaskQueue` (push, pop, peek, get, update, list,
qsize, counts) and `ScheduleRegistry` (create, get, by_hash, update, delete, list), run on each
implementation (`stores`: in memory, a SQLite file, PostgreSQL). Cases about the database itself stay in
`test_queue.py`.
"""

import uuid
from datetime import timedelta
from typing import Any

import pytest

from katsched.core.filters import parse_filter_request
from katsched.core.models import PushPolicy, Task, TaskStatus
from katsched.core.ports import PoppedBy, ScheduleQuery, TaskDraft, TaskQuery
from katsched.errors import FilterError, InvalidItem, InvalidTransition, NotAllowed, NotFound, QueueFull
from katsched.testing import FakeClock
from tests.stores import Stores

S = TaskStatus


def boefje(ooi: str, org: str = "org1", boefje_id: str = "dns-records", **extra: Any) -> dict[str, Any]:
    return {"boefje": {"id": boefje_id}, "input_ooi": ooi, "organization": org, **extra}


def report(recipe: str, org: str = "org1") -> dict[str, Any]:
    return {"report_recipe_id": recipe, "organisation_id": org}


def push(
    stores: Stores, data: dict[str, Any], priority: int = 10, scheduler: str = "boefje", org: str = "org1"
) -> Task:
    return stores.task_queue.push(TaskDraft(scheduler, org, priority, data))


def task_filter(*conditions: dict[str, Any]) -> Any:
    return parse_filter_request({"filters": list(conditions)}, "task")


# -- push ----------------------------------------------------------------------------------------------------


def test_push_queues_the_task_with_its_identity_hash(stores: Stores, clock: FakeClock) -> None:
    task = push(stores, boefje("Hostname|internet|example.com"))
    assert task.status is S.QUEUED
    assert task.hash == "74956880324db1838156e1ebf7847448"
    assert task.type == "boefje" and str(task.id) == task.data["id"]
    assert task.created_at == task.modified_at == clock.now()
    assert stores.task_queue.get(task.id) == task


def test_a_queued_duplicate_is_refused_naming_its_twin_until_it_leaves_the_queue(
    stores: Stores, clock: FakeClock
) -> None:
    first = push(stores, boefje("a"))
    clock.advance(timedelta(seconds=1))  # the first is the oldest: pop order does not fall to the ids
    with pytest.raises(NotAllowed, match="queue is not allowed to push items") as refused:
        push(stores, boefje("a"), priority=3)
    assert getattr(refused.value, "twin_id", None) == first.id
    push(stores, boefje("a", org="org2"), org="org2")  # another organisation is another identity
    push(stores, report("a"), scheduler="report")  # another scheduler is another queue
    assert [t.id for t in stores.task_queue.pop("boefje")] == [first.id]
    assert push(stores, boefje("a")).status is S.QUEUED


@pytest.mark.parametrize(
    ("policy", "priority", "data"),
    [
        (PushPolicy(allow_replace=True), 10, boefje("a")),
        (PushPolicy(allow_priority_updates=True), 4, boefje("a")),
        (PushPolicy(allow_updates=True), 10, boefje("a", deduplication_key=str(uuid.UUID(int=7)))),
    ],
)
def test_push_policy_updates_the_queued_task_in_place(
    stores: Stores, clock: FakeClock, policy: PushPolicy, priority: int, data: dict[str, Any]
) -> None:
    stores.queue.policies["boefje"] = policy
    first = push(stores, boefje("a"))
    clock.advance(timedelta(seconds=5))
    second = stores.task_queue.push(TaskDraft("boefje", "org1", priority, {**data, "id": str(first.id)}))
    assert second.id == first.id and second.priority == priority
    assert second.modified_at == clock.now()
    assert stores.task_queue.qsize("boefje") == 1


@pytest.mark.parametrize("priority", [0, None])
def test_push_requires_a_priority(stores: Stores, priority: int | None) -> None:
    with pytest.raises(InvalidItem, match="priority"):
        stores.task_queue.push(TaskDraft("boefje", "org1", priority, boefje("a")))
    assert stores.task_queue.qsize("boefje") == 0


def test_push_validates_data_against_the_scheduler_and_knows_its_schedulers(stores: Stores) -> None:
    with pytest.raises(InvalidItem, match="NormalizerTask"):
        push(stores, boefje("a"), scheduler="normalizer")
    with pytest.raises(NotFound, match="Scheduler nope not found"):
        push(stores, boefje("a"), scheduler="nope")


def test_push_with_an_existing_task_id_is_refused(stores: Stores) -> None:
    first = push(stores, boefje("a"))
    stores.task_queue.pop("boefje")
    with pytest.raises(NotAllowed, match=f"task with id {first.id} already exists"):
        stores.task_queue.push(TaskDraft("boefje", "org1", 5, boefje("b", id=str(first.id))))


def test_maxsize_refuses_automatic_tasks_but_not_manual_ones(stores: Stores) -> None:
    stores.queue.policies["boefje"] = PushPolicy(maxsize=2)
    push(stores, boefje("a"))
    push(stores, boefje("b"))
    with pytest.raises(QueueFull):
        push(stores, boefje("c"))
    assert push(stores, boefje("c"), priority=1).status is S.QUEUED
    assert stores.task_queue.qsize("boefje") == 3


# -- pop and peek --------------------------------------------------------------------------------------------


def test_pop_serves_lowest_priority_then_oldest_and_records_who(stores: Stores, clock: FakeClock) -> None:
    for ooi, priority in [("a", 20), ("b", 10), ("c", 10), ("d", 30)]:
        push(stores, boefje(ooi), priority)
        clock.advance(timedelta(seconds=1))
    popped = stores.task_queue.pop("boefje", limit=3, popped_by=PoppedBy("10.0.0.1", "runner/1"))
    assert [t.data["input_ooi"] for t in popped] == ["b", "c", "a"]
    assert all(t.status is S.DISPATCHED and t.modified_at == clock.now() for t in popped)
    assert stores.task_queue.get(popped[0].id).status is S.DISPATCHED
    assert stores.task_queue.popped_by(popped[0].id) == PoppedBy("10.0.0.1", "runner/1", clock.now())
    assert [t.data["input_ooi"] for t in stores.task_queue.pop("boefje", limit=10)] == ["d"]
    assert stores.task_queue.pop("boefje", limit=10) == []


def test_pop_honours_the_limit_for_every_scheduler(stores: Stores) -> None:
    for i in range(5):
        push(stores, report(f"r{i}"), scheduler="report")
        push(stores, boefje(f"o{i}"))
    assert len(stores.task_queue.pop("report", limit=4)) == 4
    assert len(stores.task_queue.pop("boefje", limit=4)) == 4
    assert stores.task_queue.pop("boefje", limit=0) == []


def test_pop_applies_filters(stores: Stores) -> None:
    push(stores, boefje("a", boefje_id="nmap"))
    wanted = push(stores, boefje("b", boefje_id="dns-records"))
    only_dns = task_filter(
        {"column": "data", "field": "boefje__id", "operator": "in", "value": ["dns-records"]}
    )
    popped = stores.task_queue.pop("boefje", limit=5, filters=only_dns)
    assert [t.id for t in popped] == [wanted.id]
    assert stores.task_queue.qsize("boefje") == 1


def test_pop_rendered_hands_out_each_task_with_its_rendering(stores: Stores) -> None:
    task = push(stores, boefje("a"))
    ((popped, rendered),) = stores.task_queue.pop_rendered("boefje", render=lambda t: str(t.id).encode())
    assert popped.id == task.id and rendered == str(task.id).encode()


def test_a_deduplication_group_is_handed_out_together_but_never_jumps_the_queue(stores: Stores) -> None:
    key = str(uuid.uuid4())
    urgent = push(stores, boefje("x"), priority=5)
    group = [
        push(stores, boefje("g", org=f"org{i}", deduplication_key=key), 50, org=f"org{i}") for i in range(3)
    ]
    other = push(stores, boefje("y"), priority=60)
    assert [t.id for t in stores.task_queue.pop("boefje", limit=1)] == [urgent.id]
    assert {t.id for t in stores.task_queue.pop("boefje", limit=10)} == {t.id for t in group}
    assert [t.id for t in stores.task_queue.pop("boefje", limit=10)] == [other.id]


def test_a_group_is_capped_by_the_limit(stores: Stores) -> None:
    key = str(uuid.uuid4())
    for i in range(4):
        push(stores, boefje("g", org=f"org{i}", deduplication_key=key), 50, org=f"org{i}")
    push(stores, boefje("z"), priority=51)
    first = stores.task_queue.pop("boefje", limit=3)
    assert len(first) == 3 and {t.data["deduplication_key"] for t in first} == {key}
    assert [t.data["deduplication_key"] for t in stores.task_queue.pop("boefje", limit=3)] == [key]


def test_a_dispatched_task_can_be_put_back_on_the_queue(stores: Stores) -> None:
    task = push(stores, boefje("a"))
    stores.task_queue.pop("boefje")
    assert stores.task_queue.set_status(task.id, S.QUEUED).status is S.QUEUED
    assert [t.id for t in stores.task_queue.pop("boefje")] == [task.id]


def test_peek_shows_without_claiming_in_pop_order(stores: Stores) -> None:
    second = push(stores, boefje("a"), priority=20)
    first = push(stores, boefje("b"), priority=10)
    assert [t.id for t in stores.task_queue.peek("boefje", limit=5)] == [first.id, second.id]
    assert [t.id for t in stores.task_queue.peek("boefje", limit=1, offset=1)] == [second.id]
    assert stores.task_queue.get(first.id).status is S.QUEUED


# -- status changes and updates ------------------------------------------------------------------------------


def test_status_changes_follow_the_table_and_are_recorded(stores: Stores, clock: FakeClock) -> None:
    queue = stores.task_queue
    task = push(stores, boefje("a"))
    with pytest.raises(InvalidTransition, match="from queued to running"):
        queue.set_status(task.id, S.RUNNING)
    queue.pop("boefje")
    clock.advance(timedelta(seconds=1))
    running = queue.set_status(task.id, S.RUNNING)
    clock.advance(timedelta(seconds=1))
    assert queue.set_status(task.id, S.RUNNING).modified_at > running.modified_at  # a heartbeat
    assert queue.set_status(task.id, S.COMPLETED, reason="ok").status is S.COMPLETED
    with pytest.raises(InvalidTransition, match="allowed: none, the task is finished"):
        queue.set_status(task.id, S.QUEUED)
    history = queue.history(task.id)
    assert [status for status, _, _ in history] == [S.QUEUED, S.DISPATCHED, S.RUNNING, S.RUNNING, S.COMPLETED]
    assert history[-1][2] == "ok"


def test_update_changes_the_given_fields_and_checks_status_moves(stores: Stores, clock: FakeClock) -> None:
    queue = stores.task_queue
    task = push(stores, boefje("a"), priority=30)
    other = push(stores, boefje("b"), priority=20)
    clock.advance(timedelta(seconds=1))
    updated = queue.update(task.id, {"priority": 1, "organisation": "org9"})
    assert (updated.priority, updated.organisation, updated.modified_at) == (1, "org9", clock.now())
    assert queue.get(task.id) == updated
    assert [t.id for t in queue.pop("boefje")] == [task.id]  # the new priority counts
    with pytest.raises(InvalidTransition):
        queue.update(other.id, {"status": S.COMPLETED})
    assert queue.update(other.id, {"status": "cancelled"}, reason="gone").status is S.CANCELLED
    assert queue.history(other.id)[-1] == (S.CANCELLED, clock.now(), "gone")
    with pytest.raises(NotFound):
        queue.update(uuid.uuid4(), {"priority": 3})
    assert queue.get(other.id).priority == 20


def test_cancel_and_unknown_tasks(stores: Stores) -> None:
    task = push(stores, boefje("a"))
    assert stores.task_queue.cancel(task.id).status is S.CANCELLED
    assert stores.task_queue.pop("boefje") == []
    missing = uuid.uuid4()
    with pytest.raises(NotFound, match=f"task not found, by task_id: {missing}"):
        stores.task_queue.get(missing)
    with pytest.raises(NotFound):
        stores.task_queue.set_status(missing, S.CANCELLED)


# -- listing and counts --------------------------------------------------------------------------------------


def test_list_filters_paginates_and_counts(stores: Stores, clock: FakeClock) -> None:
    queue = stores.task_queue
    created = []
    for i in range(5):
        org = "org1" if i % 2 else "org2"
        created.append(push(stores, boefje(f"ooi{i}", org=org), org=org))
        clock.advance(timedelta(minutes=1))
    page = queue.list_tasks(TaskQuery(limit=2))
    assert page.count == 5 and [t.id for t in page.tasks] == [created[4].id, created[3].id]
    assert [t.id for t in queue.list_tasks(TaskQuery(limit=2, offset=4)).tasks] == [created[0].id]
    assert queue.list_tasks(TaskQuery(organisation="org1")).count == 2
    assert [t.id for t in queue.list_tasks(TaskQuery(input_ooi="ooi3")).tasks] == [created[3].id]
    window = TaskQuery(min_created_at=created[1].created_at, max_created_at=created[2].created_at)
    assert {t.id for t in queue.list_tasks(window).tasks} == {created[1].id, created[2].id}
    assert queue.list_tasks(TaskQuery(limit=0)).count == 5
    queue.pop("boefje")
    assert queue.list_tasks(TaskQuery(status=S.DISPATCHED)).count == 1


def test_tasks_pushed_together_page_in_a_total_order(stores: Stores) -> None:
    drafts = [TaskDraft("boefje", "org1", 10, boefje(f"o{i}")) for i in range(7)]
    stores.task_queue.push_many(drafts)  # one created_at for all
    pages = [stores.task_queue.list_tasks(TaskQuery(offset=o, limit=3)).tasks for o in (0, 3, 6)]
    ids = [t.id for page in pages for t in page]
    assert len(ids) == len(set(ids)) == 7 and ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"column": "data", "field": "input_ooi", "operator": "==", "value": "b"}, ["b"]),
        ({"column": "data", "field": "input_ooi", "operator": "!=", "value": "b"}, ["a", "c"]),
        ({"column": "data", "field": "size", "operator": ">", "value": 1}, ["c"]),
        ({"column": "data", "field": "size", "operator": "<=", "value": 1}, ["b"]),
        ({"column": "data", "field": "size", "operator": "is_null"}, ["a"]),
        ({"column": "data", "field": "size", "operator": "is_not_null"}, ["b", "c"]),
        ({"column": "data", "field": "input_ooi", "operator": "like", "value": "%b%"}, ["b"]),
        ({"column": "data", "field": "flag", "operator": "is", "value": True}, ["c"]),
        ({"column": "priority", "operator": "in", "value": [1, 3]}, ["a", "c"]),
        ({"column": "organisation", "operator": "starts_with", "value": "org"}, ["a", "b", "c"]),
        ({"not": [{"column": "data", "field": "size", "operator": ">", "value": 1}]}, ["a", "b"]),
        (
            {
                "or": [
                    {"column": "priority", "operator": "==", "value": 1},
                    {"column": "data", "field": "size", "operator": "==", "value": 1},
                ]
            },
            ["a", "b"],
        ),
    ],
)
def test_list_evaluates_the_filter_tree(
    stores: Stores, condition: dict[str, Any], expected: list[str]
) -> None:
    push(stores, boefje("a"), priority=1)
    push(stores, boefje("b", size=1), priority=2)
    push(stores, boefje("c", size=5, flag=True), priority=3)
    found = stores.task_queue.list_tasks(TaskQuery(filters=task_filter(condition), limit=None)).tasks
    assert sorted(t.data["input_ooi"] for t in found) == expected


def test_qsize_counts_and_hourly_stats(stores: Stores, clock: FakeClock) -> None:
    queue = stores.task_queue
    push(stores, boefje("a"))
    push(stores, report("r"), scheduler="report")
    assert (queue.qsize("boefje"), queue.qsize("report"), queue.qsize("normalizer")) == (1, 1, 0)
    clock.advance(timedelta(hours=1))
    queue.pop("boefje")
    assert sorted(queue.counts()) == [("boefje", "org1", S.DISPATCHED, 1), ("report", "org1", S.QUEUED, 1)]
    stats = queue.hourly_stats(clock.now() - timedelta(days=1))
    hours = list(stats)
    assert hours == sorted(hours, reverse=True) and len(hours) == 2
    assert stats[hours[0]]["dispatched"] == 1 and stats[hours[0]]["total"] == 1
    assert stats[hours[1]]["queued"] == 1
    assert queue.hourly_stats(clock.now() - timedelta(days=1), scheduler_id="report")[hours[1]]["total"] == 1


def test_the_queue_answers_a_ping(stores: Stores) -> None:
    stores.task_queue.ping()
    assert stores.task_queue.single_writer is (stores.kind != "postgres")


# -- the schedule registry -----------------------------------------------------------------------------------


def test_schedule_crud_and_hash_uniqueness(stores: Stores, clock: FakeClock) -> None:
    registry = stores.registry
    created = registry.create("boefje", "org1", boefje("a"), "h1", schedule="0 * * * *")
    assert registry.get(created.id) == created and registry.by_hash("h1") == created
    assert registry.by_hash("nope") is None
    with pytest.raises(NotAllowed, match="same hash"):
        registry.create("boefje", "org1", boefje("b"), "h1")
    other = registry.create("boefje", "org1", boefje("b"), "h2")
    with pytest.raises(NotAllowed, match="same hash"):
        registry.update(other.id, {"hash": "h1"})
    clock.advance(timedelta(seconds=3))
    updated = registry.update(created.id, {"enabled": False, "schedule": None})
    assert (updated.enabled, updated.schedule, updated.modified_at) == (False, None, clock.now())
    assert registry.get(created.id) == updated
    with pytest.raises(ValueError, match="cannot update schedule fields"):
        registry.update(created.id, {"scheduler_id": "report"})
    with pytest.raises(NotFound):
        registry.update(uuid.uuid4(), {"enabled": True})
    assert registry.delete(created.id) is True and registry.delete(created.id) is False
    with pytest.raises(NotFound, match="schedule not found"):
        registry.get(created.id)


def test_deleting_a_schedule_keeps_its_tasks(stores: Stores) -> None:
    schedule = stores.registry.create("boefje", "org1", boefje("a"), "h1")
    task = push(stores, boefje("a"))
    stores.task_queue.update(task.id, {"schedule_id": schedule.id})
    assert stores.registry.delete(schedule.id)
    assert stores.task_queue.get(task.id).schedule_id is None


def test_list_schedules_filters_pages_and_counts(stores: Stores, clock: FakeClock) -> None:
    registry = stores.registry
    made = []
    for i in range(4):
        made.append(registry.create("boefje", f"org{i % 2}", boefje(f"o{i}"), f"h{i}", enabled=i != 3))
        clock.advance(timedelta(minutes=1))
    page = registry.list_schedules(ScheduleQuery(limit=2, offset=1))
    assert page.count == 4 and [s.id for s in page.schedules] == [made[2].id, made[1].id]
    assert registry.list_schedules(ScheduleQuery(organisation="org1")).count == 2
    assert registry.list_schedules(ScheduleQuery(enabled=False)).schedules == [made[3]]
    document = {
        "filters": [{"column": "data", "field": "input_ooi", "operator": "in", "value": ["o0", "o2"]}]
    }
    query = ScheduleQuery(filters=parse_filter_request(document, "schedule"))
    assert {s.id for s in registry.list_schedules(query).schedules} == {made[0].id, made[2].id}


def test_a_schedule_filter_reaches_its_tasks(stores: Stores) -> None:
    linked = stores.registry.create("boefje", "org1", boefje("a"), "h1")
    stores.registry.create("boefje", "org1", boefje("b"), "h2")
    task = push(stores, boefje("a"))
    stores.task_queue.update(task.id, {"schedule_id": linked.id})
    document = {"filters": [{"column": "tasks", "field": "status", "operator": "==", "value": "queued"}]}
    query = ScheduleQuery(filters=parse_filter_request(document, "schedule"))
    assert [s.id for s in stores.registry.list_schedules(query).schedules] == [linked.id]


def test_the_memory_store_refuses_the_operators_it_cannot_evaluate(stores: Stores) -> None:
    push(stores, boefje("a"))
    contains = task_filter({"column": "data", "operator": "@>", "value": {"input_ooi": "a"}})
    if stores.kind != "memory":
        assert stores.task_queue.list_tasks(TaskQuery(filters=contains)).count == 1
        return
    with pytest.raises(FilterError, match='operator "@>" on column data is not supported'):
        stores.task_queue.list_tasks(TaskQuery(filters=contains))
    with pytest.raises(FilterError, match='"@>"'):
        stores.task_queue.pop("boefje", filters=contains)
    assert stores.task_queue.qsize("boefje") == 1
