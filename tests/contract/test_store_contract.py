"""The store contract suite, tasks: every behaviour of the `TaskStore` port that the planners rely on, run on
each implementation (`stores`: in memory, a SQLite file, PostgreSQL), so the in-memory store the planner unit
tests use cannot drift from the SQL one. The schedule, seen-plugin and decision ports follow in
`test_store_contract_schedules.py`. A new case takes the `stores` fixture (tests/contract/conftest.py).
"""

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from katsched.core.models import PushPolicy, Task, TaskStatus
from katsched.core.ports import NewRank, PoppedBy, PushResult, ScheduleLink, TaskDraft
from katsched.errors import InvalidItem, InvalidValue, NotFound
from katsched.testing import FakeClock
from tests.stores import Stores
from tests.world import GRACE, ORG, OTHER, boefje_data, raw_event

S = TaskStatus


def draft(reference: str, org: str = ORG, priority: int = 10, link: ScheduleLink | None = None) -> TaskDraft:
    return TaskDraft("boefje", org, priority, boefje_data("dns-records", reference, org), schedule=link)


def pushed(stores: Stores, *drafts: TaskDraft) -> list[Task]:
    """Push drafts that must all be queued; the tasks."""
    outcomes = stores.tasks.push_many(drafts)
    assert [o.result for o in outcomes] == [PushResult.PUSHED] * len(drafts), outcomes
    return [o.task for o in outcomes if o.task is not None]


def queued(stores: Stores, scheduler: str = "boefje") -> list[Task]:
    return stores.queue.peek(scheduler, limit=10_000)


# -- push_many -----------------------------------------------------------------------------------------------


def test_push_many_queues_each_draft_in_one_transaction_with_its_history(
    stores: Stores, clock: FakeClock
) -> None:
    outcomes = stores.tasks.push_many([draft("a"), draft("b", org=OTHER, priority=3)])
    assert [o.result for o in outcomes] == [PushResult.PUSHED, PushResult.PUSHED]
    tasks = queued(stores)
    assert [(t.organisation, t.priority, t.data["input_ooi"]) for t in tasks] == [
        (OTHER, 3, "b"),
        (ORG, 10, "a"),
    ]
    for task, outcome in zip(reversed(tasks), outcomes, strict=True):
        assert outcome.task == task
        assert str(task.id) == task.data["id"] and task.status is S.QUEUED and task.type == "boefje"
        assert task.created_at == task.modified_at == clock.now()
        assert [status for status, _, _ in stores.queue.history(task.id)] == [S.QUEUED]
    assert stores.tasks.push_many([]) == []


def test_push_many_keeps_the_id_a_draft_gives(stores: Stores) -> None:
    chosen = uuid.uuid4()
    report = TaskDraft("report", ORG, 5, {"report_recipe_id": "r", "organisation_id": ORG}, id=chosen)
    boefje = draft("a")  # boefje and normalizer tasks carry their id in their data too
    report_task, boefje_task = pushed(stores, report, boefje)
    assert report_task.id == chosen and stores.queue.get(chosen).type == "report"
    assert boefje_task.id == uuid.UUID(boefje.data["id"])


def test_push_many_refuses_queued_duplicates_also_within_the_batch(stores: Stores) -> None:
    pushed(stores, draft("a"))
    outcomes = stores.tasks.push_many([draft("a", priority=2), draft("b"), draft("b")])
    assert [o.result for o in outcomes] == [
        PushResult.ALREADY_QUEUED,
        PushResult.PUSHED,
        PushResult.ALREADY_QUEUED,
    ]
    assert outcomes[0].task is None and len(queued(stores)) == 2


def test_a_duplicate_of_a_task_no_longer_queued_is_queued_again(stores: Stores) -> None:
    (first,) = pushed(stores, draft("a"))
    stores.queue.pop("boefje")
    (again,) = pushed(stores, draft("a"))
    assert again.id != first.id and again.hash == first.hash
    assert [t.id for t in queued(stores)] == [again.id]


def test_push_many_follows_the_push_policy_and_keeps_the_queued_id(stores: Stores) -> None:
    stores.queue.policies["boefje"] = PushPolicy(allow_priority_updates=True)
    (first,) = pushed(stores, draft("a", priority=10))
    again = stores.tasks.push_many([draft("a", priority=4)])[0]
    assert again.result is PushResult.PUSHED and again.task is not None
    assert again.task.id == first.id and again.task.data["id"] == str(first.id) and again.task.priority == 4
    assert [t.priority for t in queued(stores)] == [4]
    same = stores.tasks.push_many([draft("a", priority=4)])[0]  # nothing to update: refused
    assert same.result is PushResult.ALREADY_QUEUED


@pytest.mark.parametrize(
    ("policy", "result"),
    [
        (PushPolicy(), PushResult.ALREADY_QUEUED),
        (PushPolicy(allow_updates=True), PushResult.PUSHED),
        (PushPolicy(allow_replace=True), PushResult.PUSHED),
        (PushPolicy(allow_priority_updates=True), PushResult.ALREADY_QUEUED),
    ],
)
def test_changed_data_updates_a_queued_duplicate_only_where_the_policy_allows(
    stores: Stores, policy: PushPolicy, result: PushResult
) -> None:
    stores.queue.policies["report"] = policy
    data = {"report_recipe_id": "r", "organisation_id": ORG, "reference_date": "day"}
    (first,) = pushed(stores, TaskDraft("report", ORG, 5, data))
    changed = TaskDraft("report", ORG, 5, data | {"reference_date": "week"})
    outcome = stores.tasks.push_many([changed])[0]
    assert outcome.result is result
    (task,) = queued(stores, "report")
    assert task.id == first.id
    assert task.data["reference_date"] == ("week" if result is PushResult.PUSHED else "day")


def test_push_many_counts_the_batch_against_maxsize_but_not_manual_tasks(stores: Stores) -> None:
    stores.queue.policies["boefje"] = PushPolicy(maxsize=2)
    pushed(stores, draft("a"))
    outcomes = stores.tasks.push_many([draft("b"), draft("c"), draft("d", priority=1)])
    assert [o.result for o in outcomes] == [PushResult.PUSHED, PushResult.QUEUE_FULL, PushResult.PUSHED]
    assert outcomes[1].task is None and len(queued(stores)) == 3
    stores.queue.policies["boefje"] = PushPolicy(maxsize=2, allow_priority_updates=True)
    update = stores.tasks.push_many([draft("b", priority=7)])[0]  # an update takes no more room
    assert update.result is PushResult.PUSHED


def test_manual_tasks_pushed_in_the_batch_take_room_in_the_queue(stores: Stores) -> None:
    """Priority 1 bypasses maxsize, but a task it queued is a task the queue holds (SPEC §2)."""
    stores.queue.policies["boefje"] = PushPolicy(maxsize=3)
    pushed(stores, draft("a"))
    outcomes = stores.tasks.push_many(
        [draft("m1", priority=1), draft("b"), draft("m2", priority=1), draft("c")]
    )
    assert [o.result for o in outcomes] == [
        PushResult.PUSHED,
        PushResult.PUSHED,
        PushResult.PUSHED,
        PushResult.QUEUE_FULL,
    ]
    assert len(queued(stores)) == 4


def test_push_many_creates_or_links_schedules(stores: Stores, clock: FakeClock) -> None:
    deadline = clock.now() + GRACE
    existing = stores.registry.create(
        "boefje", ORG, boefje_data("dns-records", "b"), None, schedule="5 * * * *"
    )
    clock.advance(minutes=1)
    created, linked, plain = pushed(
        stores,
        draft("a", link=ScheduleLink(None, deadline, cron="0 0 * * *")),
        draft("b", link=ScheduleLink(existing.id, deadline)),
        draft("c"),
    )
    assert created.hash is not None
    new_schedule = stores.registry.by_hash(created.hash)
    assert new_schedule is not None and created.schedule_id == new_schedule.id
    assert (new_schedule.organisation, new_schedule.data, new_schedule.enabled) == (ORG, created.data, True)
    assert (new_schedule.schedule, new_schedule.deadline_at) == ("0 0 * * *", deadline)
    assert new_schedule.created_at == new_schedule.modified_at == clock.now()
    assert linked.schedule_id == existing.id
    relinked = stores.registry.get(existing.id)
    assert (relinked.deadline_at, relinked.schedule) == (deadline, "5 * * * *")  # no cron given: kept
    assert relinked.modified_at == clock.now()
    pushed(stores, draft("d", link=ScheduleLink(existing.id, None, cron="1 1 * * *")))
    moved = stores.registry.get(existing.id)
    assert (moved.schedule, moved.deadline_at) == ("1 1 * * *", None)
    assert plain.schedule_id is None and plain.hash is not None
    assert stores.registry.by_hash(plain.hash) is None


def test_an_update_allowed_by_the_policy_joins_the_schedule_and_takes_the_new_rank(
    stores: Stores, clock: FakeClock
) -> None:
    stores.queue.policies["boefje"] = PushPolicy(allow_priority_updates=True)
    (first,) = pushed(stores, replace(draft("a", priority=10), rerank_at=clock.now()))
    deadline = clock.now() + GRACE
    (again,) = pushed(stores, draft("a", priority=4, link=ScheduleLink(None, deadline)))
    assert again.id == first.id and again.schedule_id is not None
    assert stores.registry.get(again.schedule_id).deadline_at == deadline
    assert stores.tasks.ranks_due("boefje", ORG, clock.now() + GRACE, limit=10) == []  # no rank facts now


def test_a_failing_batch_leaves_nothing_behind(stores: Stores) -> None:
    taken = stores.registry.create("boefje", ORG, {}, "0" * 32)
    bad = TaskDraft(
        "boefje", ORG, 10, boefje_data("dns-records", "b"), schedule=ScheduleLink(uuid.uuid4(), None)
    )
    with pytest.raises(InvalidValue):  # the linked schedule does not exist: the foreign key refuses
        stores.tasks.push_many([draft("a", link=ScheduleLink(None, None)), bad])
    assert queued(stores) == [] and stores.all_schedules("boefje") == [taken]
    with pytest.raises(InvalidItem):  # a draft the queue would refuse is a planner bug, not a skip
        stores.tasks.push_many([draft("a"), TaskDraft("boefje", ORG, 10, {"input_ooi": "x"})])
    with pytest.raises(NotFound):
        stores.tasks.push_many([TaskDraft("nonsense", ORG, 10, {})])
    assert stores.all_tasks(None) == []


def test_a_new_schedule_whose_identity_has_one_already_joins_it(stores: Stores, clock: FakeClock) -> None:
    """The schedule is looked up before the push, outside its transaction: another daemon may have created
    it since (issue 10). The draft joins it, as a draft of the same batch joins the one created there."""
    (task,) = pushed(stores, draft("a", link=ScheduleLink(None, None)))
    assert task.schedule_id is not None
    stores.queue.pop("boefje")
    clock.advance(minutes=1)
    deadline = clock.now() + GRACE
    plain, again = pushed(stores, draft("b"), draft("a", link=ScheduleLink(None, deadline, cron="0 0 * * *")))
    assert again.schedule_id == task.schedule_id and plain.schedule_id is None
    joined = stores.registry.get(task.schedule_id)
    assert (joined.deadline_at, joined.schedule, joined.modified_at) == (deadline, "0 0 * * *", clock.now())
    stores.queue.policies["boefje"] = PushPolicy(allow_priority_updates=True)
    new, updated = pushed(
        stores,
        draft("c", link=ScheduleLink(None, None)),
        draft("c", priority=2, link=ScheduleLink(None, deadline)),
    )
    assert new.id == updated.id and new.schedule_id is not None and updated.schedule_id == new.schedule_id
    assert stores.registry.get(new.schedule_id).deadline_at == deadline
    assert len(stores.all_schedules("boefje")) == 2


# -- lookups -------------------------------------------------------------------------------------------------


def test_latest_by_hash_is_the_newest_task_of_each_hash_in_its_scheduler(
    stores: Stores, clock: FakeClock
) -> None:
    (old,) = pushed(stores, draft("a"))
    assert old.hash is not None
    stores.queue.pop("boefje")
    stores.queue.set_status(old.id, S.COMPLETED)
    clock.advance(minutes=1)
    (new,) = pushed(stores, draft("a"))
    report = TaskDraft("report", ORG, 5, {"report_recipe_id": "r", "organisation_id": ORG})
    (report_task,) = pushed(stores, report)
    assert report_task.hash is not None
    found = stores.tasks.latest_by_hash("boefje", [old.hash, report_task.hash, "nothing"])
    assert list(found) == [old.hash] and found[old.hash] == new
    assert stores.tasks.latest_by_hash("report", [report_task.hash])[report_task.hash].id == report_task.id
    assert stores.tasks.latest_by_hash("boefje", []) == {}
    clock.advance(minutes=1)
    stores.queue.pop("boefje")
    finished = stores.queue.set_status(new.id, S.FAILED)
    assert stores.tasks.latest_by_hash("boefje", [old.hash]) == {old.hash: finished}  # any status


def test_cancel_queued_for_object_cancels_only_that_organisations_queued_tasks(
    stores: Stores, clock: FakeClock
) -> None:
    mine, elsewhere, other_object, popped = pushed(
        stores, draft("a"), draft("a", org=OTHER), draft("b"), draft("c", priority=1)
    )
    assert [t.id for t in stores.queue.pop("boefje")] == [popped.id]
    clock.advance(minutes=1)
    assert stores.tasks.cancel_queued_for_object("boefje", ORG, "a", "ooi_deleted") == [mine.id]
    cancelled = stores.queue.get(mine.id)
    assert cancelled.status is S.CANCELLED and cancelled.modified_at == clock.now()
    assert stores.queue.history(mine.id)[-1] == (S.CANCELLED, clock.now(), "ooi_deleted")
    assert {t.id for t in queued(stores)} == {elsewhere.id, other_object.id}
    assert stores.tasks.cancel_queued_for_object("boefje", ORG, "c", "ooi_deleted") == []  # dispatched
    assert stores.tasks.cancel_queued_for_object("report", ORG, "b", "ooi_deleted") == []
    assert stores.queue.get(popped.id).status is S.DISPATCHED


def normalizer_draft(org: str, normalizer_id: str, raw: dict[str, object]) -> TaskDraft:
    return TaskDraft("normalizer", org, 10, {"normalizer": {"id": normalizer_id}, "raw_data": raw})


def test_raw_file_planned_matches_the_raw_file_not_just_the_hash(stores: Stores) -> None:
    event = raw_event()
    other_file = raw_event(meta=event.raw_data.boefje_meta)  # the same boefje run, another file
    (task,) = pushed(stores, normalizer_draft(ORG, "kat_dns", event.raw_data.model_dump(mode="json")))
    assert task.hash is not None
    assert stores.tasks.raw_file_planned([task.hash], event.raw_data.id) == {task.hash}
    assert stores.tasks.raw_file_planned([task.hash], other_file.raw_data.id) == set()
    assert stores.tasks.raw_file_planned(["0" * 32], event.raw_data.id) == set()
    stores.queue.pop("normalizer")
    stores.queue.set_status(task.id, S.COMPLETED)
    assert stores.tasks.raw_file_planned([task.hash], event.raw_data.id) == {task.hash}  # any status


def test_tasks_for_raw_file_are_the_organisations_normalizer_tasks_newest_first(
    stores: Stores, clock: FakeClock
) -> None:
    event = raw_event()
    raw = event.raw_data.model_dump(mode="json")
    first, _ = pushed(stores, normalizer_draft(ORG, "kat_a", raw), normalizer_draft(OTHER, "kat_c", raw))
    clock.advance(minutes=1)
    (second,) = pushed(stores, normalizer_draft(ORG, "kat_b", raw))
    another_file = raw_event(meta=event.raw_data.boefje_meta).raw_data.model_dump(mode="json")
    pushed(stores, normalizer_draft(ORG, "kat_d", another_file))
    stores.queue.pop("normalizer", limit=2)
    found = stores.tasks.tasks_for_raw_file(ORG, event.raw_data.id)
    assert [t.id for t in found] == [second.id, first.id]
    assert found[1].status is S.DISPATCHED  # any status
    assert stores.tasks.tasks_for_raw_file(ORG, uuid.uuid4()) == []


def test_popped_by_is_who_popped_the_task_last_and_when(stores: Stores, clock: FakeClock) -> None:
    first, second = pushed(stores, draft("a", priority=1), draft("b"))
    assert stores.tasks.popped_by(first.id) is None and stores.tasks.popped_by(uuid.uuid4()) is None
    clock.advance(minutes=1)
    stores.queue.pop("boefje", popped_by=PoppedBy("10.0.0.7", "runner/" + "x" * 300))
    runner = PoppedBy("10.0.0.7", "runner/" + "x" * 193, clock.now())
    assert stores.tasks.popped_by(first.id) == runner
    clock.advance(minutes=1)
    stores.queue.pop("boefje")  # by no one known: still when
    assert stores.tasks.popped_by(second.id) == PoppedBy(None, None, clock.now())
    stores.queue.set_status(first.id, S.QUEUED)  # given back, then re-ranked: who popped it is kept
    assert stores.tasks.set_ranks({first.id: NewRank(5, None)}) == 1
    assert stores.tasks.popped_by(first.id) == runner


# -- re-ranking ----------------------------------------------------------------------------------------------


def ranked(reference: str, rerank_in: timedelta | None, clock: FakeClock, org: str = ORG) -> TaskDraft:
    now = clock.now()
    rerank_at = now + rerank_in if rerank_in is not None else None
    return replace(draft(reference, org), last_run_at=now - timedelta(days=1), rerank_at=rerank_at)


def test_ranks_due_are_the_queued_tasks_whose_rerank_time_passed_longest_due_first(
    stores: Stores, clock: FakeClock
) -> None:
    soon, sooner, *_ = pushed(
        stores,
        ranked("soon", timedelta(minutes=5), clock),
        ranked("sooner", timedelta(minutes=1), clock),
        ranked("later", timedelta(hours=1), clock),
        ranked("never", None, clock),
        ranked("elsewhere", timedelta(minutes=1), clock, org=OTHER),
        draft("manual"),
    )
    clock.advance(minutes=10)
    due = stores.tasks.ranks_due("boefje", ORG, clock.now(), limit=10)
    assert [r.task_id for r in due] == [sooner.id, soon.id]
    assert due[0].last_run_at == clock.now() - timedelta(days=1, minutes=10)
    assert due[0].priority == 10 and due[0].created_at == sooner.created_at
    assert [r.task_id for r in stores.tasks.ranks_due("boefje", ORG, clock.now(), limit=1)] == [sooner.id]
    assert stores.tasks.ranks_due("report", ORG, clock.now(), limit=10) == []
    stores.queue.pop("boefje", limit=10)  # a popped task is no longer re-ranked
    assert stores.tasks.ranks_due("boefje", ORG, clock.now(), limit=10) == []


def test_set_ranks_changes_only_tasks_still_queued(stores: Stores, clock: FakeClock) -> None:
    a, b = pushed(stores, draft("a", priority=10), draft("b", priority=20))
    stores.queue.pop("boefje")  # takes a
    clock.advance(minutes=1)
    at = clock.now() + timedelta(hours=1)
    assert (
        stores.tasks.set_ranks({a.id: NewRank(5, at), b.id: NewRank(7, at), uuid.uuid4(): NewRank(1, at)})
        == 1
    )
    assert stores.queue.get(a.id).priority == 10 and stores.queue.get(b.id).priority == 7
    assert stores.queue.get(b.id).modified_at == clock.now()
    assert [r.task_id for r in stores.tasks.ranks_due("boefje", ORG, at, limit=10)] == [b.id]
    clock.advance(minutes=1)
    stores.tasks.set_ranks({b.id: NewRank(7, None)})  # the same priority: not a modification
    assert stores.queue.get(b.id).modified_at == clock.now() - timedelta(minutes=1)
    assert stores.tasks.ranks_due("boefje", ORG, at, limit=10) == []
    assert stores.tasks.set_ranks({}) == 0
