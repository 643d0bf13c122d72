"""The normalizer planner (reference §4.3, §10.4; SPEC §3) on the real store."""

from datetime import timedelta
from typing import Any

import pytest

from katsched.core.models import Plugin, PushPolicy
from tests.world import ORG, OTHER, START, S, World, raw_event


def normalizer(plugin_id: str = "kat_dns_normalize", *consumes: str, **fields: Any) -> Plugin:
    defaults: dict[str, Any] = {"id": plugin_id, "type": "normalizer", "enabled": True, "produces": []}
    return Plugin(**(defaults | {"consumes": list(consumes or ("text/plain",))} | fields))


def test_a_raw_file_gets_a_task_per_enabled_normalizer_of_its_mime_type(world: World) -> None:
    world.add_plugin(normalizer(name="DNS", version="2"))
    event = raw_event()
    summary = world.normalizers().plan_for_raw_file(event)
    (task,) = world.queued("normalizer")
    assert summary.planner == "normalizer.raw_file" and summary.created == 1
    assert (task.status, task.organisation, task.schedule_id) == (S.QUEUED, ORG, None)
    assert task.data["normalizer"] == {"id": "kat_dns_normalize", "name": "DNS", "version": "2"}
    assert task.data["raw_data"] == event.raw_data.model_dump(mode="json")
    assert task.data["id"] == str(task.id)
    ended_at = event.raw_data.boefje_meta.ended_at
    assert ended_at is not None and task.priority == int(ended_at.timestamp())
    assert world.schedules("normalizer") == []


def test_no_normalizer_for_the_mime_type_queues_nothing(world: World) -> None:
    world.add_plugin(normalizer("kat_other", "text/html"))
    assert world.normalizers().plan_for_raw_file(raw_event()).created == 0
    assert world.queued("normalizer") == []


def test_a_disabled_normalizer_is_not_run(world: World) -> None:
    world.add_plugin(normalizer(enabled=False))
    summary = world.normalizers().plan_for_raw_file(raw_event())
    assert summary.skipped == {"plugin_disabled": 1} and world.queued("normalizer") == []


@pytest.mark.parametrize("mime_types", [("error/unknown",), ("boefje/dns-records", "error/boefje")])
def test_a_raw_file_that_records_a_failure_is_not_normalised(
    world: World, mime_types: tuple[str, ...]
) -> None:
    world.add_plugin(normalizer("kat_dns_normalize", "boefje/dns-records", "error/unknown", "error/boefje"))
    summary = world.normalizers().plan_for_raw_file(raw_event(*mime_types))
    assert summary.skipped == {"error_mime_type": 1} and world.queued("normalizer") == []


def test_a_normalizer_of_several_mime_types_runs_once_and_each_normalizer_once(world: World) -> None:
    world.add_plugin(normalizer("kat_a", "text/plain", "boefje/dns-records"))
    world.add_plugin(normalizer("kat_b", "boefje/dns-records"))
    summary = world.normalizers().plan_for_raw_file(raw_event("text/plain", "boefje/dns-records"))
    assert summary.created == 2
    assert sorted(t.data["normalizer"]["id"] for t in world.queued("normalizer")) == ["kat_a", "kat_b"]


def test_another_raw_file_of_the_same_run_is_not_queued_twice(world: World) -> None:
    """Same normalizer, same boefje run: the same identity hash, so the queued one stands (§10.4)."""
    world.add_plugin(normalizer())
    planner, first = world.normalizers(), raw_event()
    planner.plan_for_raw_file(first)
    summary = planner.plan_for_raw_file(raw_event(meta=first.raw_data.boefje_meta))
    assert summary.skipped == {"already_queued": 1} and len(world.queued("normalizer")) == 1


def test_another_raw_file_of_the_same_run_is_normalised_once_the_first_left_the_queue(world: World) -> None:
    world.add_plugin(normalizer())
    planner, first = world.normalizers(), raw_event()
    planner.plan_for_raw_file(first)
    world.queue.pop("normalizer")
    second = raw_event(meta=first.raw_data.boefje_meta)
    assert planner.plan_for_raw_file(second).created == 1
    assert world.queued("normalizer")[0].data["raw_data"]["id"] == str(second.raw_data.id)


def test_a_redelivered_raw_file_is_not_normalised_again(world: World) -> None:
    """RabbitMQ redelivers a message whose ack was lost: its task may be running already."""
    world.add_plugin(normalizer())
    planner, event = world.normalizers(), raw_event()
    planner.plan_for_raw_file(event)
    world.queue.pop("normalizer")
    summary = planner.plan_for_raw_file(event)
    assert summary.skipped == {"already_planned": 1} and world.queued("normalizer") == []


def test_a_full_queue_skips_the_task(world: World) -> None:
    world.policies["normalizer"] = PushPolicy(maxsize=1)
    world.add_plugin(normalizer())
    planner = world.normalizers()
    planner.plan_for_raw_file(raw_event())
    summary = planner.plan_for_raw_file(raw_event())
    assert summary.skipped == {"queue_full": 1} and len(world.queued("normalizer")) == 1


def test_the_organisations_own_normalizers_decide(world: World) -> None:
    world.add_plugin(normalizer(), OTHER)
    assert world.normalizers().plan_for_raw_file(raw_event()).created == 0


def test_the_ranker_is_a_setting(world: World) -> None:
    world.add_plugin(normalizer())
    world.clock.advance(timedelta(minutes=5))
    world.normalizers(ranker="created_at").plan_for_raw_file(raw_event())
    assert world.queued("normalizer")[0].priority == int((START + timedelta(minutes=5)).timestamp())
    with pytest.raises(ValueError, match="unknown ranker"):
        world.normalizers(ranker="fastest")
