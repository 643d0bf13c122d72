"""The store contract suite, schedules and what the planners remember: the `ScheduleStore`, `SeenPlugins` and
`DecisionLog` ports, run on each implementation (`stores`: in memory, a SQLite file, PostgreSQL)."""

import uuid
from datetime import timedelta

import pytest

from katsched.core.models import Schedule, TaskStatus
from katsched.core.ports import DecisionRecord, PushResult, ScheduleLink, TaskDraft
from katsched.testing import FakeClock
from tests.stores import Stores
from tests.world import ORG, OTHER, THIRD, boefje_data

S = TaskStatus


def schedule(
    stores: Stores,
    clock: FakeClock,
    key: str,
    due_in: timedelta | None,
    *,
    org: str = ORG,
    scheduler: str = "boefje",
) -> Schedule:
    """A schedule whose deadline is `due_in` from now (None: no deadline), its hash `key` repeated."""
    deadline = clock.now() + due_in if due_in is not None else None
    return stores.registry.create(scheduler, org, {}, key * 32, deadline_at=deadline)


def join(stores: Stores, due: Schedule, reference: str) -> uuid.UUID:
    """Push a task into the schedule (as a planner does); the task's id."""
    draft = TaskDraft(
        due.scheduler_id, due.organisation, 10, boefje_data("dns-records", reference, due.organisation),
        schedule=ScheduleLink(due.id, due.deadline_at),
    )  # fmt: skip
    (outcome,) = stores.tasks.push_many([draft])
    assert outcome.result is PushResult.PUSHED and outcome.task is not None
    return outcome.task.id


# -- ScheduleStore -------------------------------------------------------------------------------------------


def test_schedule_lookups_deadlines_and_disabling(stores: Stores, clock: FakeClock) -> None:
    rows, store = stores.registry, stores.schedules
    a = rows.create("boefje", ORG, {}, "a" * 32, deadline_at=clock.now())
    b = rows.create("boefje", ORG, {}, "b" * 32)
    assert store.by_hashes(["a" * 32, "b" * 32, "c" * 32]) == {"a" * 32: a, "b" * 32: b}
    assert store.by_hashes([]) == {}
    later = clock.now() + timedelta(hours=3)
    clock.advance(seconds=1)
    store.set_deadlines({a.id: later, b.id: None, uuid.uuid4(): later})
    assert rows.get(a.id).deadline_at == later and rows.get(a.id).modified_at == clock.now()
    store.disable([a.id, uuid.uuid4()])
    assert rows.get(a.id).enabled is False and rows.get(b.id).enabled is True
    assert rows.get(a.id).modified_at == clock.now()
    store.set_deadlines({})
    store.disable([])


def test_due_schedules_are_the_enabled_ones_past_their_deadline_oldest_first(
    stores: Stores, clock: FakeClock
) -> None:
    newest_due = schedule(stores, clock, "a", timedelta(minutes=-1))
    oldest_due = schedule(stores, clock, "b", timedelta(hours=-2))
    right_now = schedule(stores, clock, "c", timedelta(0))
    schedule(stores, clock, "d", timedelta(minutes=1))  # not yet
    schedule(stores, clock, "e", None)  # never
    disabled = schedule(stores, clock, "f", timedelta(hours=-3))
    stores.schedules.disable([disabled.id])
    other_org = schedule(stores, clock, "9", timedelta(hours=-1), org=OTHER)
    schedule(stores, clock, "8", timedelta(hours=-4), scheduler="report")
    due = stores.schedules.due("boefje", 10)
    assert [s.id for s in due] == [oldest_due.id, other_org.id, newest_due.id, right_now.id]
    assert due[0] == oldest_due
    assert [s.id for s in stores.schedules.due("boefje", 2)] == [oldest_due.id, other_org.id]
    assert [s.id for s in stores.schedules.due("boefje", 10, ORG)] == [
        oldest_due.id,
        newest_due.id,
        right_now.id,
    ]
    assert stores.schedules.due("boefje", 10, THIRD) == []
    clock.advance(minutes=1)
    assert len(stores.schedules.due("boefje", 10)) == 5


def test_equal_deadlines_come_in_a_stable_order(stores: Stores, clock: FakeClock) -> None:
    made = [schedule(stores, clock, key, timedelta(minutes=-5)) for key in "abcdef"]
    first = [s.id for s in stores.schedules.due("boefje", 10)]
    assert first == sorted(s.id for s in made)  # by id, as UUIDs compare
    assert [s.id for s in stores.schedules.due("boefje", 10)] == first
    assert [s.id for s in stores.schedules.due("boefje", 3)] == first[:3]


@pytest.mark.parametrize(
    ("status", "blocks"),
    [
        (S.QUEUED, True),
        (S.DISPATCHED, True),
        (S.RUNNING, True),
        (S.COMPLETED, False),
        (S.FAILED, False),
        (S.CANCELLED, False),
    ],
)
def test_a_schedule_with_an_active_task_is_not_due(
    stores: Stores, clock: FakeClock, status: TaskStatus, blocks: bool
) -> None:
    busy = schedule(stores, clock, "a", timedelta(hours=-1))
    task_id = join(stores, busy, "a")
    stores.schedules.set_deadlines({busy.id: busy.deadline_at})  # joining moved it on; due again
    if status is S.CANCELLED:
        stores.queue.cancel(task_id)
    elif status is not S.QUEUED:
        stores.queue.pop("boefje")
        if status is not S.DISPATCHED:
            stores.queue.set_status(task_id, status)
    assert stores.queue.get(task_id).status is status
    assert [s.id for s in stores.schedules.due("boefje", 10)] == ([] if blocks else [busy.id])


def test_a_task_of_another_schedule_or_none_does_not_block(stores: Stores, clock: FakeClock) -> None:
    due = schedule(stores, clock, "a", timedelta(hours=-1))
    elsewhere = schedule(stores, clock, "b", timedelta(hours=1))
    join(stores, elsewhere, "b")
    (outcome,) = stores.tasks.push_many([TaskDraft("boefje", ORG, 1, boefje_data("dns-records", "a"))])
    assert outcome.result is PushResult.PUSHED  # the same work pushed by hand, outside the schedule
    assert [s.id for s in stores.schedules.due("boefje", 10)] == [due.id]


# -- SeenPlugins ---------------------------------------------------------------------------------------------


def test_seen_plugins_are_kept_per_organisation(stores: Stores, clock: FakeClock) -> None:
    seen = stores.seen
    seen.mark_seen(ORG, ["a", "b"], clock.now())
    seen.mark_seen(ORG, ["b", "c"], clock.now())  # b again: no conflict
    seen.mark_seen(OTHER, ["a"], clock.now())
    seen.mark_seen(OTHER, [], clock.now())
    assert seen.seen(ORG) == {"a", "b", "c"} and seen.seen(OTHER) == {"a"} and seen.seen(THIRD) == set()
    seen.forget(ORG, ["a", "x"])
    seen.forget(ORG, [])
    assert seen.seen(ORG) == {"b", "c"} and seen.seen(OTHER) == {"a"}
    seen.mark_seen(ORG, ["a"], clock.now())  # enabled again: seen anew
    assert seen.seen(ORG) == {"a", "b", "c"}


# -- DecisionLog ---------------------------------------------------------------------------------------------


def test_record_keeps_one_decision_per_key_the_last_winning(stores: Stores, clock: FakeClock) -> None:
    log = stores.decisions
    now = clock.now()
    first = DecisionRecord("o", "s", "p", "boefje", "skip", "plugin_disabled", now)
    second = DecisionRecord("o", "s", "p", "boefje", "skip", "scan_level_too_low", now + timedelta(seconds=1))
    log.record([first, second])
    log.record([])
    assert log.last("o", "s") == {"p": second}
    assert log.last("o", "other") == {} and log.last("other", "s") == {}


def test_a_decision_keeps_its_task_and_subject(stores: Stores, clock: FakeClock) -> None:
    log = stores.decisions
    task_id = uuid.uuid4()
    raw = {"id": str(uuid.uuid4()), "mime_types": [{"value": "text/plain"}]}
    run = DecisionRecord("o", "s", "n", "normalizer", "run", "permitted", clock.now(), task_id, raw)
    skip = DecisionRecord("o", "s", "m", "normalizer", "skip", "plugin_disabled", clock.now())
    log.record([run, skip])
    clock.advance(minutes=1)
    later = DecisionRecord("o", "s", "m", "normalizer", "run", "permitted", clock.now())
    log.record([later])
    assert log.last("o", "s") == {"n": run, "m": later}
    assert log.last("o", "s")["n"].subject_data == raw
