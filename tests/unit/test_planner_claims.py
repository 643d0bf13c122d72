"""Rescheduling by claims (issue 10): the planners plan only the due schedules they claimed, look up the KAT
services for those alone, and leave a schedule whose claim they lost to the daemon that holds it now."""

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from katsched.core.models import OOI, Plugin
from katsched.errors import ServiceUnavailable
from tests.unit.test_planner_boefje_recurring import due_schedule
from tests.unit.test_planner_report import report_schedule
from tests.world import ORG, World, boefje, hostname

LEASE = timedelta(minutes=2)


class CountingServices:
    """Counts the Katalogus and Octopoes look-ups of the planners made through the in-memory services; runs
    `during_lookup` once, at the first object look-up (another daemon acting meanwhile)."""

    def __init__(self, world: World) -> None:
        self.plugins: list[str] = []
        self.objects: list[str] = []
        self.during_lookup: list[Callable[[], None]] = []
        self._fresh, self._get = world.catalog.fresh_plugins, world.graph.get_object
        world.catalog.fresh_plugins = self.fresh_plugins  # type: ignore[method-assign]
        world.graph.get_object = self.get_object  # type: ignore[method-assign]

    def fresh_plugins(self, organisation_id: str) -> list[Plugin]:
        self.plugins.append(organisation_id)
        return self._fresh(organisation_id)

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None:
        self.objects.append(reference)
        while self.during_lookup:
            self.during_lookup.pop()()
        return self._get(organisation_id, reference, valid_time=valid_time)


def test_a_schedule_another_daemon_holds_is_left_alone_until_its_claim_lapses(world: World) -> None:
    world.add_plugin(boefje())
    schedule = due_schedule(world, ooi=world.add_object(hostname()))
    counted = CountingServices(world)
    other = world.schedule_store.claim_due("boefje", 10, LEASE, ORG)  # another daemon's batch
    assert [s.id for s in other.schedules] == [schedule.id]
    assert world.boefjes(claim_lease=LEASE).reschedule_due(ORG).created == 0
    assert counted.plugins == [] and counted.objects == []  # nothing claimed: no KAT request at all
    world.clock.advance(LEASE)  # that daemon died: its claim lapses
    assert world.boefjes(claim_lease=LEASE).reschedule_due(ORG).created == 1
    assert counted.plugins == [ORG] and counted.objects == [schedule.data["input_ooi"]]
    assert [t.schedule_id for t in world.queued()] == [schedule.id]


def test_a_claim_lost_while_gathering_is_left_to_its_new_holder_and_the_work_is_done_once(
    world: World,
) -> None:
    world.add_plugin(boefje())
    ooi = world.add_object(hostname())
    schedule = due_schedule(world, ooi=ooi)
    counted = CountingServices(world)
    taken = []

    def slow_then_taken() -> None:  # Octopoes answers after the lease; another daemon claims meanwhile
        world.clock.advance(LEASE + timedelta(seconds=1))
        taken.append(world.schedule_store.claim_due("boefje", 10, LEASE, ORG))

    counted.during_lookup.append(slow_then_taken)
    summary = world.boefjes(claim_lease=LEASE).reschedule_due(ORG)
    assert summary.created == 0 and world.queued() == []
    assert world.schedule_rows.get(schedule.id).deadline_at == schedule.deadline_at  # untouched
    (theirs,) = taken
    assert [s.id for s in theirs.schedules] == [schedule.id]
    world.schedule_store.release(theirs)  # as if it had failed: anyone's again
    assert world.boefjes(claim_lease=LEASE).reschedule_due(ORG).created == 1
    assert len(world.queued()) == 1


def test_a_batch_that_fails_releases_its_claim_for_the_next_run(world: World) -> None:
    world.add_plugin(boefje())
    due_schedule(world, ooi=world.add_object(hostname()))
    counted = CountingServices(world)

    def octopoes_down() -> None:
        raise ServiceUnavailable("octopoes: connection refused")

    counted.during_lookup.append(octopoes_down)
    with pytest.raises(ServiceUnavailable):
        world.boefjes(claim_lease=LEASE).reschedule_due(ORG)
    assert world.boefjes(claim_lease=LEASE).reschedule_due(ORG).created == 1  # no wait for the lease


def test_two_daemons_split_the_due_schedules_and_each_asks_for_its_own(world: World) -> None:
    world.add_plugin(boefje())
    made = [due_schedule(world, ooi=world.add_object(hostname(f"h{n}.example.com"))) for n in range(6)]
    counted = CountingServices(world)
    first = world.boefjes(claim_lease=LEASE, reschedule_batch_size=4)
    held = world.schedule_store.claim_due("boefje", 4, LEASE, ORG)  # the second daemon, mid-batch
    assert first.reschedule_due(ORG).created == 2
    assert sorted(counted.objects) == sorted(s.data["input_ooi"] for s in made if s.id not in held.ids)
    world.schedule_store.release(held)
    assert world.boefjes(claim_lease=LEASE).reschedule_due(ORG).created == 4
    assert sorted(t.schedule_id for t in world.queued()) == sorted(s.id for s in made)
    assert len(counted.objects) == 6  # each object asked once over both daemons


def test_a_report_schedule_another_daemon_holds_is_left_alone(world: World) -> None:
    schedule = report_schedule(world)
    other = world.schedule_store.claim_due("report", 10, LEASE, ORG)
    assert world.reports(claim_lease=LEASE).reschedule_due(ORG).created == 0
    world.schedule_store.release(other)
    assert world.reports(claim_lease=LEASE).reschedule_due(ORG).created == 1
    assert [t.schedule_id for t in world.queued("report")] == [schedule.id]
