"""The planners keep their last decision per (organisation, subject, plugin), on SQLite and PostgreSQL; the
retention job prunes them with the history."""

from datetime import timedelta

from sqlalchemy import Engine

from katsched.core.ports import DecisionRecord
from katsched.core.rules import Reason
from katsched.schedulers.sweeps import RetentionPolicy, prune_retention
from katsched.store.decisions import SqlDecisionLog, count_refusals
from katsched.testing import FakeClock
from tests.unit.test_planner_store import ORG, World, boefje, hostname, mutation, raw_event, world

__all__ = ["world"]


def test_a_mutation_leaves_the_decision_for_each_boefje(world: World) -> None:
    world.add_plugin(boefje("dns-records"))
    world.add_plugin(boefje("nmap", scan_level=4))
    ooi = hostname(level=2)
    world.boefjes().plan_for_mutation(mutation(ooi))
    task = world.queued()[0]
    last = world.decisions.last(ORG, ooi.primary_key)
    assert {key: (d.action, d.reason) for key, d in last.items()} == {
        "dns-records": ("run", Reason.NOT_ACTIVE.value),
        "nmap": ("skip", Reason.SCAN_LEVEL_TOO_LOW.value),
    }
    assert last["dns-records"].task_id == task.id and last["nmap"].task_id is None
    assert last["dns-records"].decided_at == world.clock.now()


def test_the_next_decision_replaces_the_last(world: World) -> None:
    world.add_plugin(boefje())
    ooi = hostname()
    world.boefjes().plan_for_mutation(mutation(ooi))
    world.clock.advance(minutes=5)
    world.boefjes().plan_for_mutation(mutation(ooi, "update"))
    last = world.decisions.last(ORG, ooi.primary_key)["dns-records"]
    assert (last.action, last.reason, last.task_id) == ("skip", "within_grace_period", None)
    assert last.decided_at == world.clock.now()


def test_a_disabled_schedule_is_a_decision_too(world: World) -> None:
    world.add_plugin(boefje())
    ooi = world.add_object(hostname())
    world.boefjes().plan_for_mutation(mutation(ooi))
    world.finish(world.queued()[0])
    world.catalog.remove_plugin(ORG, "dns-records")
    world.clock.advance(days=2)
    world.boefjes().reschedule_due(ORG)
    last = world.decisions.last(ORG, ooi.primary_key)["dns-records"]
    assert (last.action, last.reason) == ("disable", Reason.PLUGIN_GONE.value)


def test_the_normalizer_planner_keeps_the_raw_file_with_its_decisions(world: World) -> None:
    normalizer = boefje("kat_dns_normalize", type="normalizer", consumes=["text/plain"], scan_level=None)
    world.add_plugin(normalizer)
    world.add_plugin(normalizer.model_copy(update={"id": "off", "enabled": False}))
    event = raw_event("text/plain")
    world.normalizers().plan_for_raw_file(event)
    last = world.decisions.last(ORG, str(event.raw_data.id))
    assert {key: (d.action, d.reason) for key, d in last.items()} == {
        "kat_dns_normalize": ("run", "permitted"),
        "off": ("skip", "plugin_disabled"),
    }
    assert last["kat_dns_normalize"].task_id == world.queued("normalizer")[0].id
    assert last["off"].subject_data == event.raw_data.model_dump(mode="json")


def test_record_keeps_one_row_per_key_the_last_winning(engine: Engine, clock: FakeClock) -> None:
    log = SqlDecisionLog(engine)
    now = clock.now()
    first = DecisionRecord("o", "s", "p", "boefje", "skip", "plugin_disabled", now)
    second = DecisionRecord("o", "s", "p", "boefje", "skip", "scan_level_too_low", now + timedelta(seconds=1))
    log.record([first, second])
    log.record([])
    assert log.last("o", "s") == {"p": second}
    assert log.last("o", "other") == {}


def test_status_counts_the_refusals_of_the_last_hour(engine: Engine, clock: FakeClock) -> None:
    log = SqlDecisionLog(engine)
    now = clock.now()
    log.record(
        [DecisionRecord("o", f"s{i}", "p", "boefje", "skip", "scan_level_too_low", now) for i in range(3)]
        + [DecisionRecord("o", "s9", "p", "boefje", "skip", "plugin_disabled", now - timedelta(hours=2))]
        + [DecisionRecord("o", "s8", "p", "boefje", "run", "never_ran", now)]
    )
    reasons = ["scan_level_too_low", "plugin_disabled"]
    assert count_refusals(engine, now - timedelta(hours=1), reasons) == {"scan_level_too_low": 3}


def test_retention_prunes_old_decisions_with_the_history(engine: Engine, clock: FakeClock) -> None:
    log = SqlDecisionLog(engine)
    old = clock.now()
    log.record([DecisionRecord("o", f"s{i}", "p", "boefje", "skip", "x", old) for i in range(5)])
    clock.advance(days=8)
    log.record([DecisionRecord("o", "new", "p", "boefje", "skip", "x", clock.now())])
    policy = RetentionPolicy(tasks_days=30, history_days=7, batch_size=2)
    summary = prune_retention(engine, clock, policy)
    assert summary.decisions == 5 and summary.complete
    assert set(log.last("o", "new")) == {"p"} and log.last("o", "s0") == {}
