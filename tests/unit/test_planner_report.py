"""The report planner (reference §4.6, §10.5; SPEC §3) on the real store."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from katsched.core.hashing import task_hash
from katsched.core.models import ReportTask, Schedule
from tests.world import DISPATCH_TIMEOUT, ORG, OTHER, S, World


def report_data(recipe: str = "recipe-1", org: str = ORG) -> dict[str, Any]:
    return {"report_recipe_id": recipe, "organisation_id": org}


def report_schedule(
    world: World,
    recipe: str = "recipe-1",
    cron: str | None = None,
    ago: timedelta = timedelta(minutes=1),
    data: dict[str, Any] | None = None,
) -> Schedule:
    """A report schedule as Rocky creates it through the API, due `ago`."""
    data = data if data is not None else report_data(recipe)
    try:
        key = task_hash(ReportTask.model_validate(data))
    except ValidationError:
        key = uuid.uuid4().hex
    return world.schedule_rows.create(
        "report", ORG, data, key, schedule=cron, deadline_at=world.clock.now() - ago
    )


def test_a_due_one_off_report_is_queued_once(world: World) -> None:
    schedule = report_schedule(world)
    planner = world.reports()
    summary = planner.reschedule_due(ORG)
    (task,) = world.queued("report")
    assert summary.planner == "report.reschedule" and summary.created == 1
    assert task.hash == schedule.hash and task.schedule_id == schedule.id and task.organisation == ORG
    assert task.data == report_data() and task.priority == int(world.clock.now().timestamp())
    assert world.schedule_rows.get(schedule.id).deadline_at is None  # one-off: done
    world.clock.advance(days=1)
    assert planner.reschedule_due(ORG).created == 0 and len(world.all_tasks("report")) == 1


def test_a_report_with_a_cron_is_queued_at_each_fire(world: World) -> None:
    schedule = report_schedule(world, cron="0 * * * *")
    planner = world.reports()
    planner.reschedule_due(ORG)
    assert world.schedule_rows.get(schedule.id).deadline_at == datetime(2026, 11, 28, 13, tzinfo=UTC)
    world.finish(world.queued("report")[0])
    world.clock.advance(minutes=59)
    assert planner.reschedule_due(ORG).created == 0
    world.clock.advance(minutes=1)
    assert planner.reschedule_due(ORG).created == 1
    assert world.schedule_rows.get(schedule.id).deadline_at == datetime(2026, 11, 28, 14, tzinfo=UTC)


def test_a_report_whose_previous_task_is_active_is_not_queued_again(world: World) -> None:
    """The original queued it again at each cron fire, even while the last one was still running (§4.6)."""
    schedule = report_schedule(world, cron="*/5 * * * *")
    planner = world.reports()
    planner.reschedule_due(ORG)
    running = world.finish(world.queued("report")[0], S.DISPATCHED)
    world.queue.set_status(running.id, S.RUNNING)
    for _ in range(5):  # five fires pass while it runs, with heartbeats
        world.clock.advance(minutes=5)
        world.queue.set_status(running.id, S.RUNNING)
        assert planner.reschedule_due(ORG).created == 0
    world.queue.set_status(running.id, S.COMPLETED)
    assert planner.reschedule_due(ORG).created == 1  # the missed fires collapse into one run
    assert world.schedule_rows.get(schedule.id).deadline_at == datetime(2026, 11, 28, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize("cron", ["0 * * * *", None])
def test_an_unlinked_active_report_holds_the_schedule(world: World, cron: str | None) -> None:
    schedule = report_schedule(world, cron=cron)
    manual = world.push_manual("report", 1, report_data())  # e.g. "generate now" in Rocky
    summary = world.reports().reschedule_due(ORG)
    assert summary.skipped == {"already_active": 1} and [t.id for t in world.queued("report")] == [manual.id]
    next_fire = datetime(2026, 11, 28, 13, tzinfo=UTC) if cron else schedule.deadline_at
    assert world.schedule_rows.get(schedule.id).deadline_at == next_fire


def test_a_stalled_report_task_does_not_block_the_next_run(world: World) -> None:
    schedule = report_schedule(world, cron="0 * * * *")
    planner = world.reports()
    planner.reschedule_due(ORG)
    stalled = world.finish(world.queued("report")[0], S.DISPATCHED)
    world.clock.advance(hours=2)
    assert planner.reschedule_due(ORG).created == 0
    assert world.sweep_expired_leases("report") == [stalled.id]
    assert planner.reschedule_due(ORG).created == 1
    assert world.queued("report")[0].schedule_id == schedule.id


def test_an_unlinked_stalled_report_task_does_not_block_either(world: World) -> None:
    report_schedule(world)
    manual = world.push_manual("report", 1, report_data())
    world.finish(manual, S.DISPATCHED)
    world.clock.advance(DISPATCH_TIMEOUT + timedelta(seconds=1))
    assert world.reports().reschedule_due(ORG).created == 1


@pytest.mark.parametrize(
    ("data", "cron", "reason"),
    [({"report_recipe_id": "r"}, None, "invalid_data"), (report_data(), "61 * * * *", "invalid_cron")],
)
def test_a_schedule_that_cannot_run_is_disabled(
    world: World, data: dict[str, Any], cron: str | None, reason: str
) -> None:
    schedule = report_schedule(world, data=data, cron=cron)
    summary = world.reports().reschedule_due(ORG)
    assert summary.disabled == {reason: 1} and world.queued("report") == []
    assert world.schedule_rows.get(schedule.id).enabled is False


def test_every_due_report_is_served_a_batch_at_a_time_oldest_first(world: World) -> None:
    made = [report_schedule(world, f"recipe-{n}", ago=timedelta(minutes=100 - n)) for n in range(30)]
    report_schedule(world, "later", ago=-timedelta(minutes=1))  # not due yet
    summary = world.reports(reschedule_batch_size=7).reschedule_due(ORG)
    assert summary.created == 30
    assert {t.schedule_id for t in world.queued("report")} == {s.id for s in made}


def test_only_the_organisations_own_reports_are_served(world: World) -> None:
    report_schedule(world)
    assert world.reports().reschedule_due(OTHER).created == 0
    assert world.reports().reschedule_due(ORG).created == 1
