"""The boefje planner's mutation path (reference §4.2.2, §4.2.5 to §4.2.7, §10.3; SPEC §3), real store."""

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from katsched.core.models import BoefjeConfig, PushPolicy, Task
from katsched.core.rules import Reason
from tests.world import (
    DISPATCH_TIMEOUT,
    GRACE,
    ORG,
    OTHER,
    RUN_TIMEOUT,
    THIRD,
    S,
    World,
    boefje,
    boefje_meta,
    deletion,
    hostname,
    mutation,
)


def only_task(world: World) -> Task:
    queued = world.queued()
    assert len(queued) == 1, queued
    return queued[0]


# -- what a mutation queues ----------------------------------------------------------------------------------


def test_a_create_mutation_queues_a_task_per_boefje_that_takes_the_object(world: World) -> None:
    world.add_plugin(boefje("dns-records", name="DNS records", version="1.0"))
    world.add_plugin(boefje("nmap", consumes=["IPAddressV4"]))
    ooi = hostname()
    summary = world.boefjes().plan_for_mutation(mutation(ooi))
    task = only_task(world)
    assert task.status is S.QUEUED and task.organisation == ORG and task.scheduler_id == "boefje"
    assert task.data["input_ooi"] == ooi.primary_key and task.data["organization"] == ORG
    assert task.data["boefje"] == {
        "id": "dns-records",
        "name": "DNS records",
        "version": "1.0",
        "oci_image": None,
    }
    assert task.priority == 2  # never ran
    assert world.queue.get(task.id).status is S.QUEUED
    assert (summary.planner, summary.created, dict(summary.skipped)) == ("boefje.mutation", 1, {})
    assert summary.log_line() == "planner_run planner=boefje.mutation created=1 skipped=- disabled=-"


def test_an_object_no_boefje_takes_queues_nothing(world: World) -> None:
    world.add_plugin(boefje(consumes=["IPAddressV4"]))
    summary = world.boefjes().plan_for_mutation(mutation(hostname()))
    assert world.queued() == [] and summary.created == 0


def test_a_create_or_update_without_the_object_queues_nothing(world: World) -> None:
    world.add_plugin(boefje())
    without = mutation(hostname()).model_copy(update={"value": None})
    summary = world.boefjes().plan_for_mutation(without)
    assert world.queued() == [] and summary.skipped == {"no_value": 1}


@pytest.mark.parametrize(
    ("plugin_fields", "ooi_level", "reason"),
    [
        ({"scan_level": 0}, 0, None),
        ({"scan_level": 4}, 0, Reason.SCAN_LEVEL_TOO_LOW),
        ({"enabled": False}, 2, Reason.PLUGIN_DISABLED),
        ({}, None, Reason.NO_SCAN_PROFILE),
        ({"scan_level": None}, 2, Reason.PLUGIN_SCAN_LEVEL_UNKNOWN),
    ],
)
def test_permission_to_scan(
    world: World, plugin_fields: dict[str, Any], ooi_level: int | None, reason: str | None
) -> None:
    world.add_plugin(boefje(**plugin_fields))
    summary = world.boefjes().plan_for_mutation(mutation(hostname(level=ooi_level)))
    if reason is None:
        assert summary.created == 1 and len(world.queued()) == 1
    else:
        assert summary.skipped == {reason: 1} and world.queued() == []


def test_the_same_mutation_twice_queues_one_task(world: World) -> None:
    world.add_plugin(boefje())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    again = planner.plan_for_mutation(mutation(hostname(), "update"))
    assert len(world.queued()) == 1
    assert again.created == 0 and again.skipped == {Reason.WITHIN_GRACE_PERIOD: 1}


# -- run_on (reference §4.2.2 step 5) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_on", "operation", "queued", "scheduled"),
    [
        (["create"], "create", True, False),
        (["create", "update"], "create", True, False),
        (["update"], "create", False, False),
        (None, "create", True, True),
        (["create"], "update", False, False),
        (["create", "update"], "update", True, False),
        (["update"], "update", True, False),
        (None, "update", True, True),
    ],
)
def test_run_on(
    world: World, run_on: list[str] | None, operation: str, queued: bool, scheduled: bool
) -> None:
    world.add_plugin(boefje(run_on=run_on))
    summary = world.boefjes().plan_for_mutation(mutation(hostname(), operation))
    assert len(world.queued()) == int(queued)
    if queued:
        task = only_task(world)
        assert (task.schedule_id is not None) is scheduled
        assert (world.schedule_of(task) is not None) is scheduled
    else:
        assert summary.skipped == {f"run_on_excludes_{operation}": 1}
        assert world.schedules() == []


# -- grace period, interval, active and stalled tasks --------------------------------------------------------


def test_a_task_within_the_grace_period_waits_until_it_has_passed(world: World) -> None:
    world.add_plugin(boefje())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    world.finish(only_task(world))
    world.clock.advance(GRACE - timedelta(seconds=1))
    assert planner.plan_for_mutation(mutation(hostname(), "update")).skipped == {
        Reason.WITHIN_GRACE_PERIOD: 1
    }
    world.clock.advance(seconds=1)
    assert planner.plan_for_mutation(mutation(hostname(), "update")).created == 1


def test_the_plugin_interval_replaces_the_grace_period(world: World) -> None:
    world.add_plugin(boefje(interval=60))
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    world.finish(only_task(world))
    world.clock.advance(minutes=59)
    assert planner.plan_for_mutation(mutation(hostname(), "update")).skipped == {Reason.WITHIN_INTERVAL: 1}
    world.clock.advance(minutes=1)
    assert planner.plan_for_mutation(mutation(hostname(), "update")).created == 1


@pytest.mark.parametrize(("status", "ago", "runs"), [
    (S.DISPATCHED, DISPATCH_TIMEOUT, False),
    (S.DISPATCHED, DISPATCH_TIMEOUT + timedelta(seconds=1), True),
    (S.RUNNING, RUN_TIMEOUT, False),
    (S.RUNNING, RUN_TIMEOUT + timedelta(seconds=1), True),
])  # fmt: skip
def test_an_active_task_blocks_the_next_until_its_lease_runs_out(
    world: World, status: S, ago: timedelta, runs: bool
) -> None:
    """The original never recovered a stalled task: it blocked the boefje on the object forever (§11.1)."""
    world.add_plugin(boefje())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    first = only_task(world)
    world.clock.advance(days=3)  # the grace period has long passed
    world.finish(first, S.DISPATCHED)
    if status is S.RUNNING:
        world.queue.set_status(first.id, S.RUNNING)
    world.clock.advance(ago)
    summary = planner.plan_for_mutation(mutation(hostname(), "update"))
    if runs:
        assert summary.created == 1 and only_task(world).id != first.id
        assert world.queue.get(first.id).status is status  # the lease sweep fails it, not the planner
    else:
        assert summary.skipped == {Reason.ALREADY_ACTIVE: 1} and world.queued() == []


def test_a_queued_task_blocks_a_new_one(world: World) -> None:
    world.add_plugin(boefje(interval=1))
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    world.clock.advance(minutes=5)
    assert planner.plan_for_mutation(mutation(hostname(), "update")).skipped == {Reason.ALREADY_ACTIVE: 1}


def test_a_cancelled_task_does_not_block_the_next(world: World) -> None:
    """The original counted CANCELLED as running, so a cancel stopped that scan for good (§11.1)."""
    world.add_plugin(boefje())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    cancelled = world.queue.cancel(only_task(world).id)
    world.clock.advance(minutes=1)
    assert planner.plan_for_mutation(mutation(hostname(), "update")).created == 1
    assert only_task(world).id != cancelled.id


def test_bytes_knows_runs_our_history_does_not(world: World) -> None:
    world.add_plugin(boefje())
    ooi, now = hostname(), world.clock.now()
    world.raw.add(boefje_meta("dns-records", ooi, now - timedelta(hours=2), now - timedelta(hours=1)))
    planner = world.boefjes()
    assert planner.plan_for_mutation(mutation(ooi)).skipped == {Reason.WITHIN_GRACE_PERIOD: 1}
    world.clock.advance(hours=22)
    summary = planner.plan_for_mutation(mutation(ooi))
    assert summary.created == 1
    assert only_task(world).priority == 857  # ran a day ago: staleness int(3 + 997 * 6/7)


def test_bytes_is_asked_once_per_object_for_the_boefjes_our_history_does_not_know(world: World) -> None:
    for plugin_id in ("dns-records", "nmap", "whois"):
        world.add_plugin(boefje(plugin_id))
    a, b, now = hostname("a.org"), hostname("b.org"), world.clock.now()
    world.raw.add(boefje_meta("nmap", a, now - timedelta(hours=2), now - timedelta(hours=1)))
    asked: list[tuple[str | None, list[str]]] = []
    last_runs = world.raw.last_runs

    def counting(input_ooi: str | None, organization: str, boefje_ids: Any) -> Any:
        asked.append((input_ooi, sorted(boefje_ids)))
        return last_runs(input_ooi, organization, boefje_ids)

    world.raw.last_runs = counting  # type: ignore[method-assign]
    planner = world.boefjes()
    summary = planner.plan_for_mutations([mutation(a), mutation(b)])
    assert summary.created == 5 and summary.skipped == {Reason.WITHIN_GRACE_PERIOD: 1}
    every = ["dns-records", "nmap", "whois"]
    assert sorted(asked) == [(a.primary_key, every), (b.primary_key, every)]
    asked.clear()
    whois_on_a = [
        t for t in world.queued() if (t.data["boefje"]["id"], t.data["input_ooi"]) == ("whois", a.primary_key)
    ]
    world.queue.cancel(whois_on_a[0].id)
    world.clock.advance(GRACE)
    planner.plan_for_mutations([mutation(a, "update"), mutation(b, "update")])
    # Only nmap on a (Bytes alone knew its run) and the cancelled whois task: the rest is our history.
    assert sorted(asked) == [(a.primary_key, ["nmap", "whois"])]


def test_a_run_bytes_sees_in_progress_is_within_the_grace_period(world: World) -> None:
    world.add_plugin(boefje())
    ooi, now = hostname(), world.clock.now()
    world.raw.add(boefje_meta("dns-records", ooi, now - timedelta(minutes=5), None))
    assert world.boefjes().plan_for_mutation(mutation(ooi)).skipped == {Reason.WITHIN_GRACE_PERIOD: 1}


def test_a_finished_task_without_raw_data_is_no_error(world: World) -> None:
    """The original raised "Task has been finished, but no results found in bytes" here (§4.2.5 step 4)."""
    world.add_plugin(boefje())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    world.finish(only_task(world), S.FAILED)
    assert planner.plan_for_mutation(mutation(hostname(), "update")).skipped == {
        Reason.WITHIN_GRACE_PERIOD: 1
    }
    world.clock.advance(GRACE)
    assert planner.plan_for_mutation(mutation(hostname(), "update")).created == 1


# -- deletes -------------------------------------------------------------------------------------------------


def test_a_delete_as_octopoes_sends_it_cancels_that_organisations_queued_tasks(world: World) -> None:
    """Octopoes sends deletes with `value: null`; the original dropped them, and would have cancelled other
    organisations' tasks for the same reference (§11.1 item 5)."""
    world.add_plugin(boefje(), ORG, OTHER)
    world.add_plugin(boefje("dns-zone"))
    ooi, planner = hostname(), world.boefjes()
    planner.plan_for_mutation(mutation(ooi))
    planner.plan_for_mutation(mutation(ooi, org=OTHER))
    planner.plan_for_mutation(mutation(hostname("other.org")))
    mine = [t for t in world.queued() if t.organisation == ORG and t.data["input_ooi"] == ooi.primary_key]
    assert len(mine) == 2
    summary = planner.plan_for_mutation(deletion(ooi.primary_key))
    assert summary.cancelled == 2 and summary.created == 0
    assert summary.log_line().endswith("cancelled=2")
    assert all(world.queue.get(task.id).status is S.CANCELLED for task in mine)
    assert sorted((t.organisation, t.data["input_ooi"]) for t in world.queued()) == [
        (ORG, hostname("other.org").primary_key),
        (ORG, hostname("other.org").primary_key),
        (OTHER, ooi.primary_key),
    ]


def test_a_delete_with_nothing_queued_does_nothing(world: World) -> None:
    summary = world.boefjes().plan_for_mutation(deletion(hostname().primary_key))
    assert summary.cancelled == 0 and world.all_tasks() == []


# -- schedules and deadlines (the original's post_push) ------------------------------------------------------


def test_a_pushed_task_gets_a_schedule_due_after_the_grace_period(world: World) -> None:
    world.add_plugin(boefje())
    world.boefjes().plan_for_mutation(mutation(hostname()))
    task = only_task(world)
    schedule = world.schedule_of(task)
    assert schedule is not None and task.schedule_id == schedule.id
    assert (schedule.organisation, schedule.data, schedule.enabled, schedule.schedule) == (
        ORG,
        task.data,
        True,
        None,
    )
    assert schedule.deadline_at == world.clock.now() + GRACE


def test_the_deadline_adds_the_configured_jitter(world: World) -> None:
    world.add_plugin(boefje())
    world.boefjes(deadline_jitter=timedelta(hours=5)).plan_for_mutation(mutation(hostname()))
    schedule = world.schedule_of(only_task(world))
    assert schedule is not None and schedule.deadline_at == world.clock.now() + GRACE + timedelta(hours=5)


def test_a_plugin_cron_is_kept_on_the_schedule_and_sets_the_deadline(world: World) -> None:
    world.add_plugin(boefje(cron="0 0 * * *"))
    world.boefjes().plan_for_mutation(mutation(hostname()))
    schedule = world.schedule_of(only_task(world))
    assert schedule is not None and schedule.schedule == "0 0 * * *"
    assert schedule.deadline_at == datetime(2026, 11, 29, tzinfo=UTC)  # the next midnight, UTC


def test_a_plugin_interval_sets_the_deadline(world: World) -> None:
    """The original computed the interval and then overwrote it with grace + jitter (§4.2.7, §11.1 item 6)."""
    world.add_plugin(boefje(interval=1500))
    world.boefjes(deadline_jitter=timedelta(hours=5)).plan_for_mutation(mutation(hostname()))
    schedule = world.schedule_of(only_task(world))
    assert schedule is not None and schedule.deadline_at == world.clock.now() + timedelta(minutes=1500)


def test_a_later_push_moves_the_same_schedule(world: World) -> None:
    world.add_plugin(boefje())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    first = only_task(world)
    world.finish(first)
    world.clock.advance(days=2)
    planner.plan_for_mutation(mutation(hostname(), "update"))
    second = only_task(world)
    assert second.schedule_id == first.schedule_id
    assert len(world.schedules()) == 1
    schedule = world.schedule_of(second)
    assert schedule is not None and schedule.deadline_at == world.clock.now() + GRACE


def test_a_disabled_schedule_stays_disabled_and_the_task_unlinked(world: World) -> None:
    world.add_plugin(boefje())
    planner = world.boefjes()
    planner.plan_for_mutation(mutation(hostname()))
    first = only_task(world)
    assert first.schedule_id is not None
    world.schedule_store.disable([first.schedule_id])
    world.finish(first)
    world.clock.advance(days=2)
    planner.plan_for_mutation(mutation(hostname(), "update"))
    second = only_task(world)
    assert second.schedule_id is None
    schedule = world.schedule_rows.get(first.schedule_id)
    assert schedule.enabled is False and schedule.deadline_at == first.created_at + GRACE


def test_a_full_queue_skips_the_task(world: World) -> None:
    world.policies["boefje"] = PushPolicy(maxsize=1)
    world.add_plugin(boefje())
    planner = world.boefjes()
    assert planner.plan_for_mutation(mutation(hostname("a.org"))).created == 1
    summary = planner.plan_for_mutation(mutation(hostname("b.org")))
    assert summary.skipped == {"queue_full": 1} and len(world.queued()) == 1
    assert len(world.schedules()) == 1  # no schedule for a task that was not queued


# -- cross-organisation deduplication (reference §4.2.5 step 6) ----------------------------------------------


def configs(world: World, *orgs: str, settings: dict[str, Any] | None = None) -> None:
    for n, org in enumerate(orgs):
        world.catalog.add_config(
            BoefjeConfig(
                id=n, boefje_id="dns-records", enabled=True, organisation_id=org, settings=settings or {}
            )
        )


def test_one_run_serves_the_organisations_with_the_same_settings_and_object(world: World) -> None:
    world.add_plugin(boefje(), ORG, OTHER, THIRD)
    ooi = world.add_object(hostname(), ORG, OTHER, THIRD)
    configs(world, ORG, OTHER, THIRD)
    summary = world.boefjes().plan_for_mutation(mutation(ooi))
    queued = world.queued()
    assert summary.created == 3 and sorted(t.organisation for t in queued) == [ORG, OTHER, THIRD]
    original = next(t for t in queued if t.organisation == ORG)
    assert {t.data["deduplication_key"] for t in queued} == {str(original.id)}
    assert all(world.schedule_of(t) is not None and t.schedule_id for t in queued)
    assert len({t.priority for t in queued}) == 1
    popped = world.queue.pop("boefje", limit=10)
    assert sorted(t.organisation for t in popped) == [ORG, OTHER, THIRD]


@pytest.mark.parametrize("case", ["no_config", "alone", "other_settings", "object_missing", "level_too_low"])
def test_no_duplicates_means_one_task_without_a_key(world: World, case: str) -> None:
    world.add_plugin(boefje(scan_level=2), ORG, OTHER)
    ooi = world.add_object(hostname(), ORG)
    world.add_object(
        hostname(level=1 if case == "level_too_low" else 2), *([] if case == "object_missing" else [OTHER])
    )
    if case == "alone":
        configs(world, ORG)
    elif case == "other_settings":
        configs(world, ORG)
        configs(world, OTHER, settings={"TIMEOUT": 3})
    elif case != "no_config":
        configs(world, ORG, OTHER)
    world.boefjes().plan_for_mutation(mutation(ooi))
    task = only_task(world)
    assert task.organisation == ORG and task.data["deduplication_key"] is None


def test_katalogus_configs_are_asked_once_per_boefje_within_the_cache_ttl(world: World) -> None:
    asked: list[tuple[str, str | None]] = []
    ask = world.catalog.configs

    def counting(boefje_id: str, organisation_id: str | None = None, **kwargs: Any) -> list[BoefjeConfig]:
        asked.append((boefje_id, organisation_id))
        return ask(boefje_id, organisation_id, **kwargs)

    world.catalog.configs = counting  # type: ignore[method-assign]
    world.add_plugin(boefje())
    planner = world.boefjes(configs_cache_ttl=timedelta(seconds=30))
    for name in ("a.org", "b.org", "c.org"):
        planner.plan_for_mutation(mutation(hostname(name)))
    assert asked == [("dns-records", ORG)]
    world.clock.advance(seconds=30)
    planner.plan_for_mutation(mutation(hostname("d.org")))
    assert len(asked) == 2


def test_each_push_and_skip_is_one_log_line(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.add_plugin(boefje())
    planner = world.boefjes()
    with caplog.at_level(logging.DEBUG, logger="katsched.schedulers"):
        planner.plan_for_mutation(mutation(hostname()))
        planner.plan_for_mutation(mutation(hostname()))
    task = only_task(world)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith(f"task_pushed task_id={task.id} scheduler=boefje org={ORG} priority=2 ")
    assert lines[1] == (
        f"task_skipped scheduler=boefje org={ORG} boefje=dns-records input_ooi={hostname().primary_key} "
        "reason=within_grace_period"
    )
    assert len(lines) == 2


# -- a batch of mutations (the consumer's batches of messages) -----------------------------------------------


def test_a_batch_of_mutations_is_planned_in_order(world: World) -> None:
    world.add_plugin(boefje(), ORG, OTHER)
    a, b, c = hostname("a.org"), hostname("b.org"), hostname("c.org")
    batch = [mutation(a), mutation(b, org=OTHER), deletion(a.primary_key), mutation(c), mutation(a, "update")]
    summary = world.boefjes().plan_for_mutations(batch)
    assert summary.created == 4 and summary.cancelled == 1
    queued = sorted((t.organisation, t.data["input_ooi"]) for t in world.queued())
    assert queued == [(ORG, a.primary_key), (ORG, c.primary_key), (OTHER, b.primary_key)]
    cancelled = [t for t in world.all_tasks() if t.status is S.CANCELLED]
    assert [t.data["input_ooi"] for t in cancelled] == [a.primary_key]


@pytest.mark.parametrize(("run_on", "created"), [(None, 1), (["create"], 1), (["update"], 1)])
def test_an_object_twice_in_a_batch_is_planned_once_and_bytes_asked_once(
    world: World, run_on: list[str] | None, created: int
) -> None:
    world.add_plugin(boefje(run_on=run_on))
    asked: list[str | None] = []
    last_run = world.raw.last_run

    def counting(boefje_id: str, input_ooi: str | None, organization: str) -> Any:
        asked.append(input_ooi)
        return last_run(boefje_id, input_ooi, organization)

    world.raw.last_run = counting  # type: ignore[method-assign]
    summary = world.boefjes().plan_for_mutations([mutation(hostname()), mutation(hostname(), "update")])
    assert summary.created == created and len(world.queued()) == 1 and asked == [hostname().primary_key]
