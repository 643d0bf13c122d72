"""The boefje planner's recurring jobs (reference §4.2.3, §4.2.4, §10.3; SPEC §3): due schedules, newly
enabled boefjes and re-ranking, on the real store with the clock driven by hand."""

import logging
import uuid
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from katsched.core.hashing import task_hash
from katsched.core.models import OOI, BoefjeTask, PushPolicy, Schedule
from katsched.core.rules import Reason
from katsched.errors import ServiceUnavailable
from tests.world import (
    GRACE,
    ORG,
    OTHER,
    S,
    World,
    boefje,
    boefje_data,
    hostname,
    mutation,
)


def due_schedule(
    world: World,
    plugin_id: str = "dns-records",
    ooi: OOI | None = None,
    *,
    data: dict[str, Any] | None = None,
    cron: str | None = None,
) -> Schedule:
    """A schedule, as an earlier push left it, whose deadline has just passed (`ooi` None: a boefje that
    takes no object)."""
    data = data if data is not None else boefje_data(plugin_id, ooi.primary_key if ooi is not None else None)
    try:
        key = task_hash(BoefjeTask.model_validate(data))
    except ValidationError:
        key = uuid.uuid4().hex
    deadline = world.clock.now() - timedelta(minutes=1)
    return world.schedule_rows.create("boefje", ORG, data, key, deadline_at=deadline, schedule=cron)


class CountingGraph:
    """Counts Octopoes object lookups made through the in-memory graph."""

    def __init__(self, world: World) -> None:
        self.calls: list[str] = []
        self._get = world.graph.get_object
        world.graph.get_object = self.get_object  # type: ignore[method-assign]

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None:
        self.calls.append(reference)
        return self._get(organisation_id, reference, valid_time=valid_time)


# -- due schedules (reference §4.2.4) ------------------------------------------------------------------------


def test_a_due_schedule_pushes_its_task_and_moves_its_deadline(world: World) -> None:
    world.add_plugin(boefje())
    ooi = world.add_object(hostname())
    schedule = due_schedule(world, ooi=ooi)
    summary = world.boefjes().reschedule_due(ORG)
    task = world.queued()[0]
    assert summary.created == 1 and len(world.queued()) == 1
    assert task.hash == schedule.hash and task.schedule_id == schedule.id
    assert task.data["input_ooi"] == ooi.primary_key and task.data["id"] != schedule.data["id"]
    assert world.schedule_rows.get(schedule.id).deadline_at == world.clock.now() + GRACE
    assert world.boefjes().reschedule_due(ORG).created == 0  # running it again: nothing is due
    assert len(world.queued()) == 1


def test_a_schedule_of_a_boefje_without_an_object(world: World) -> None:
    world.add_plugin(boefje(consumes=[]))
    counting = CountingGraph(world)
    schedule = due_schedule(world)
    assert world.boefjes().reschedule_due(ORG).created == 1
    task = world.queued()[0]
    assert task.data["input_ooi"] is None and task.schedule_id == schedule.id and counting.calls == []


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("object_gone", Reason.OOI_GONE),
        ("plugin_gone", Reason.PLUGIN_GONE),
        ("plugin_disabled", Reason.PLUGIN_DISABLED),
        ("not_consumed", Reason.NOT_CONSUMED),
        ("not_permitted", Reason.NOT_PERMITTED),
        ("not_a_boefje", Reason.NOT_A_BOEFJE),
        ("invalid_data", "invalid_data"),
    ],
)
def test_a_schedule_whose_plugin_or_object_moved_on_is_disabled(
    world: World, caplog: pytest.LogCaptureFixture, case: str, reason: str
) -> None:
    plugin_fields: dict[str, Any] = {
        "plugin_disabled": {"enabled": False},
        "not_consumed": {"consumes": ["IPAddressV4"]},
        "not_permitted": {"scan_level": 3},
        "not_a_boefje": {"type": "normalizer"},
    }.get(case, {})
    if case != "plugin_gone":
        world.add_plugin(boefje(**plugin_fields))
    ooi = hostname()
    if case != "object_gone":
        world.add_object(ooi)
    data = {"boefje": "not an object"} if case == "invalid_data" else None
    schedule = due_schedule(world, ooi=ooi, data=data)
    with caplog.at_level(logging.INFO, logger="katsched.schedulers"):
        summary = world.boefjes().reschedule_due(ORG)
    assert world.queued() == [] and summary.disabled == {reason: 1}
    assert world.schedule_rows.get(schedule.id).enabled is False
    assert f"schedule_disabled schedule_id={schedule.id} scheduler=boefje reason={reason}" in caplog.messages


def test_due_schedules_are_served_oldest_deadline_first_even_when_thousands_are_due(world: World) -> None:
    """The original took the 100 newest-created due schedules each minute, so older ones could starve."""
    world.add_plugin(boefje())
    now, count = world.clock.now(), 2000
    rows = []
    for n in range(count):  # the newest created is the oldest due
        ooi = world.add_object(hostname(f"host-{n}.org"))
        world.clock.set(now - timedelta(seconds=n))
        deadline = now - timedelta(minutes=count - n)
        data = boefje_data("dns-records", ooi.primary_key)
        rows.append(world.schedule_rows.create("boefje", ORG, data, f"{n:032x}", deadline_at=deadline))
    world.clock.set(now)
    world.policies["boefje"] = PushPolicy(maxsize=150)  # room for only the first 150
    summary = world.boefjes(reschedule_batch_size=100).reschedule_due(ORG)
    assert summary.created == 150 and summary.skipped == {"queue_full": 50}
    oldest = sorted(rows, key=lambda row: row.deadline_at or now)[:150]
    assert {t.schedule_id for t in world.queued()} == {row.id for row in oldest}
    assert len(world.schedule_store.due("boefje", count)) == count - 150  # the rest wait, still due
    world.policies.clear()
    assert world.boefjes(reschedule_batch_size=100).reschedule_due(ORG).created == count - 150


def test_a_due_schedule_within_its_grace_period_waits_until_it_may_run(world: World) -> None:
    world.add_plugin(boefje())
    ooi = world.add_object(hostname())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(ooi))
    first = world.queued()[0]
    assert first.schedule_id is not None
    world.finish(first)
    world.clock.advance(hours=1)
    world.schedule_store.set_deadlines({first.schedule_id: world.clock.now()})  # e.g. moved through the API
    summary = planner.reschedule_due(ORG)
    assert summary.skipped == {Reason.WITHIN_GRACE_PERIOD: 1} and world.queued() == []
    assert world.schedule_rows.get(first.schedule_id).deadline_at == first.created_at + GRACE
    assert world.schedule_store.due("boefje", 10) == []  # it no longer takes a place among the due


def test_a_due_schedule_whose_work_is_queued_already_moves_on(world: World) -> None:
    world.add_plugin(boefje())
    ooi = world.add_object(hostname())
    schedule = due_schedule(world, ooi=ooi)
    manual = world.push_manual("boefje", 1, boefje_data("dns-records", ooi.primary_key))
    world.clock.advance(days=2)  # queued that long: past the grace period, and a queued task has no lease
    summary = world.boefjes().reschedule_due(ORG)
    assert summary.skipped == {Reason.ALREADY_ACTIVE: 1} and [t.id for t in world.queued()] == [manual.id]
    assert world.schedule_rows.get(schedule.id).deadline_at == world.clock.now() + GRACE


def test_a_stalled_task_does_not_block_its_schedule(world: World) -> None:
    """A worker that vanished left its task DISPATCHED; the original kept the schedule blocked for good."""
    world.add_plugin(boefje())
    ooi = world.add_object(hostname())
    planner = world.boefjes()
    due_schedule(world, ooi=ooi)
    planner.reschedule_due(ORG)
    stalled = world.finish(world.queued()[0], S.DISPATCHED)
    world.clock.advance(GRACE + timedelta(minutes=1))
    assert planner.reschedule_due(ORG).created == 0  # the schedule's task is still dispatched
    assert world.sweep_expired_leases("boefje") == [stalled.id]
    assert planner.reschedule_due(ORG).created == 1
    assert world.queued()[0].schedule_id == stalled.schedule_id


def test_a_cancelled_task_does_not_block_its_schedule(world: World) -> None:
    world.add_plugin(boefje())
    ooi = world.add_object(hostname())
    planner = world.boefjes()
    schedule = due_schedule(world, ooi=ooi)
    planner.reschedule_due(ORG)
    world.queue.cancel(world.queued()[0].id)
    world.schedule_store.set_deadlines({schedule.id: world.clock.now()})
    world.clock.advance(minutes=1)
    assert planner.reschedule_due(ORG).created == 1


def test_the_plugin_interval_sets_the_next_deadline(world: World) -> None:
    world.add_plugin(boefje(interval=60))
    schedule = due_schedule(world, ooi=world.add_object(hostname()))
    world.boefjes(deadline_jitter=timedelta(hours=5)).reschedule_due(ORG)
    assert world.schedule_rows.get(schedule.id).deadline_at == world.clock.now() + timedelta(minutes=60)


def test_the_schedules_own_cron_sets_the_next_deadline_when_the_plugin_has_none(world: World) -> None:
    world.add_plugin(boefje())
    schedule = due_schedule(world, ooi=world.add_object(hostname()), cron="30 * * * *")
    world.boefjes().reschedule_due(ORG)
    assert world.schedule_rows.get(schedule.id).deadline_at == datetime(2026, 11, 28, 12, 30, tzinfo=UTC)


def test_each_object_is_asked_of_octopoes_once_per_run_and_not_for_a_condemned_schedule(world: World) -> None:
    for plugin_id in ("a", "b", "c"):
        world.add_plugin(boefje(plugin_id))
    ooi = world.add_object(hostname())
    counting = CountingGraph(world)
    for plugin_id in ("a", "b", "c", "gone"):
        due_schedule(world, plugin_id, ooi=ooi)
    summary = world.boefjes().reschedule_due(ORG)
    assert summary.created == 3 and summary.disabled == {Reason.PLUGIN_GONE: 1}
    assert counting.calls == [ooi.primary_key]


def test_only_the_organisations_own_schedules_are_served(world: World) -> None:
    world.add_plugin(boefje())
    schedule = due_schedule(world, ooi=world.add_object(hostname()))
    assert world.boefjes().reschedule_due(OTHER).created == 0
    assert world.schedule_rows.get(schedule.id).deadline_at is not None
    assert world.boefjes().reschedule_due(ORG).created == 1


# -- newly enabled boefjes (reference §4.2.3) ----------------------------------------------------------------


def test_a_new_boefje_gets_a_task_for_each_object_it_may_scan(world: World) -> None:
    world.add_plugin(boefje(scan_level=2))
    world.add_object(hostname("a.org", level=2))
    world.add_object(hostname("b.org", level=4))
    world.add_object(hostname("c.org", level=1))  # below the boefje's level
    summary = world.boefjes().plan_new_plugins(ORG)
    assert summary.planner == "boefje.new_plugins" and summary.created == 2
    queued = world.queued()
    assert sorted(t.data["input_ooi"] for t in queued) == [
        hostname("a.org").primary_key,
        hostname("b.org").primary_key,
    ]
    assert all(t.schedule_id is not None for t in queued)


@pytest.mark.parametrize("case", ["disabled", "empty_consumes", "no_objects"])
def test_nothing_to_enumerate_queues_nothing(world: World, case: str) -> None:
    fields = {"disabled": {"enabled": False}, "empty_consumes": {"consumes": []}}.get(case, {})
    world.add_plugin(boefje(**fields))
    if case != "no_objects":
        world.add_object(hostname())
    assert world.boefjes().plan_new_plugins(ORG).created == 0 and world.all_tasks() == []


def test_an_object_already_scanned_or_being_scanned_is_skipped(world: World) -> None:
    world.add_plugin(boefje(), ORG)
    ooi = world.add_object(hostname())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(ooi))
    assert planner.plan_new_plugins(ORG).skipped == {Reason.WITHIN_GRACE_PERIOD: 1}
    assert len(world.queued()) == 1


class CountingObjects:
    """Counts the enumerations asked of Octopoes, and fails them while `failing` is set."""

    def __init__(self, world: World) -> None:
        self.asked = 0
        self.failing = False
        self._objects = world.graph.objects
        world.graph.objects = self.objects  # type: ignore[method-assign]

    def objects(
        self, organisation_id: str, object_types: Collection[str], *args: Any, **kwargs: Any
    ) -> Iterator[OOI]:
        self.asked += 1
        found = list(self._objects(organisation_id, object_types, *args, **kwargs))
        yield from found[:1]
        if self.failing:
            raise ServiceUnavailable("octopoes: GET /org1/objects answered 500 after 3 attempts")
        yield from found[1:]


def test_a_restart_does_not_enumerate_every_boefje_again(world: World) -> None:
    """The original kept "seen" boefjes in memory: every restart enumerated every object of every boefje."""
    world.add_plugin(boefje())
    world.add_object(hostname())
    counting = CountingObjects(world)
    assert world.boefjes().plan_new_plugins(ORG).created == 1
    world.finish(world.queued()[0])
    world.clock.advance(days=3)
    restarted = world.boefjes()  # a new planner on the same database
    assert restarted.plan_new_plugins(ORG).created == 0
    assert counting.asked == 1 and world.queued() == []
    assert restarted.plan_new_plugins(OTHER).created == 0  # organisations are counted apart


def test_a_boefje_enabled_again_counts_as_new(world: World) -> None:
    world.add_plugin(boefje())
    world.add_object(hostname())
    planner = world.boefjes()
    planner.plan_new_plugins(ORG)
    world.finish(world.queued()[0])
    world.add_plugin(boefje(enabled=False))
    planner.plan_new_plugins(ORG)
    world.clock.advance(days=2)
    world.add_plugin(boefje())
    assert planner.plan_new_plugins(ORG).created == 1


def test_an_octopoes_failure_mid_enumeration_loses_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.add_plugin(boefje())
    for name in ("a.org", "b.org", "c.org"):
        world.add_object(hostname(name))
    counting = CountingObjects(world)
    counting.failing = True
    planner = world.boefjes(reschedule_batch_size=1)
    with caplog.at_level(logging.WARNING, logger="katsched.schedulers"), pytest.raises(ServiceUnavailable):
        planner.plan_new_plugins(ORG)
    assert len(world.queued()) == 1  # the batch before the failure stays committed
    assert caplog.messages == [
        "planner_deferred planner=boefje.new_plugins org=org1 "
        "error='octopoes: GET /org1/objects answered 500 after 3 attempts'"
    ]
    counting.failing = False
    summary = planner.plan_new_plugins(ORG)  # the boefje was not marked seen: enumerated again
    assert summary.created == 2 and summary.skipped == {Reason.WITHIN_GRACE_PERIOD: 1}
    assert len(world.queued()) == 3


def test_a_boefje_without_a_scan_level_is_not_enumerated(world: World) -> None:
    world.add_plugin(boefje(scan_level=None))
    world.add_object(hostname())
    summary = world.boefjes().plan_new_plugins(ORG)
    assert summary.skipped == {Reason.PLUGIN_SCAN_LEVEL_UNKNOWN: 1} and world.queued() == []


# -- re-ranking ----------------------------------------------------------------------------------------------


def test_waiting_tasks_are_re_ranked_as_they_grow_stale(world: World) -> None:
    world.add_plugin(boefje())
    ooi, planner = world.add_object(hostname()), world.boefjes()
    planner.plan_for_mutation(mutation(ooi))
    world.finish(world.queued()[0])
    world.clock.advance(days=1)
    planner.plan_for_mutation(mutation(ooi))  # last ran a day ago
    planner.plan_for_mutation(mutation(hostname("new.org")))  # never ran: 2, and stays 2
    world.push_manual("boefje", 1, boefje_data("dns-records", "manual"))  # manual: keeps 1
    before = {t.data["input_ooi"]: t.priority for t in world.queued()}
    assert before[ooi.primary_key] == 857
    assert planner.rerank_queued(ORG) == 0
    world.clock.advance(days=3, hours=12)
    assert planner.rerank_queued(ORG) == 1
    after = {t.data["input_ooi"]: t.priority for t in world.queued()}
    assert after == before | {ooi.primary_key: 359}  # 4.5 days: int(3 + 997 * 2.5/7)
    world.clock.advance(days=30)
    planner.rerank_queued(ORG)
    assert {t.data["input_ooi"]: t.priority for t in world.queued()}[ooi.primary_key] == 3
