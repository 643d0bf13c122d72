"""A planning batch asks Bytes (last runs) and Octopoes (the objects of due schedules) for several objects at
once, up to `lookup_concurrency` (issue 15). Each fake below waits at a barrier that only opens when that many
calls are in flight together, so one-at-a-time look-ups fail the test instead of passing it slowly."""

import threading
from collections.abc import Collection
from datetime import datetime

import pytest

from katsched.core.models import OOI, BoefjeMeta
from katsched.schedulers.common import concurrently
from tests.unit.test_planner_boefje_recurring import due_schedule
from tests.world import ORG, World, boefje, hostname, mutation

TOGETHER = 3


class MeetingBytes:
    """A Bytes that knows no runs, and whose look-ups must overlap."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(TOGETHER, timeout=10)
        self.asked: list[str | None] = []

    def last_runs(
        self, input_ooi: str | None, organization: str, boefje_ids: Collection[str]
    ) -> dict[str, BoefjeMeta]:
        self.asked.append(input_ooi)
        self.barrier.wait()
        return {}


class MeetingObjects:
    """The world's objects, looked up only by overlapping calls."""

    def __init__(self, world: World) -> None:
        self.graph = world.graph
        self.barrier = threading.Barrier(TOGETHER, timeout=10)

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None:
        self.barrier.wait()
        return self.graph.get_object(organisation_id, reference, valid_time=valid_time)

    def __getattr__(self, name: str) -> object:
        return getattr(self.graph, name)


def test_bytes_is_asked_about_the_objects_of_a_batch_at_the_same_time(world: World) -> None:
    world.add_plugin(boefje())
    oois = [world.add_object(hostname(f"h{i}.org")) for i in range(TOGETHER)]
    bytes_ = MeetingBytes()
    planner = world.boefjes(raw_data=bytes_, lookup_concurrency=TOGETHER)
    summary = planner.plan_for_mutations([mutation(ooi) for ooi in oois])
    assert summary.created == TOGETHER
    assert sorted(bytes_.asked) == sorted(ooi.primary_key for ooi in oois)  # once per object


def test_octopoes_is_asked_about_the_objects_of_due_schedules_at_the_same_time(world: World) -> None:
    world.add_plugin(boefje())
    for i in range(TOGETHER):
        due_schedule(world, ooi=world.add_object(hostname(f"s{i}.org")))
    planner = world.boefjes(objects=MeetingObjects(world), lookup_concurrency=TOGETHER)
    assert planner.reschedule_due(ORG).created == TOGETHER


def test_one_at_a_time_when_so_configured_and_the_first_error_is_raised() -> None:
    order: list[int] = []
    assert concurrently(lambda key: order.append(key) or key * 2, [3, 1, 3, 2], workers=1) == {
        3: 6,
        1: 2,
        2: 4,
    }
    assert order == [3, 1, 2]

    def failing(key: int) -> int:
        if key == 2:
            raise ValueError("two")
        return key

    with pytest.raises(ValueError, match="two"):
        concurrently(failing, [1, 2, 3], workers=3)
