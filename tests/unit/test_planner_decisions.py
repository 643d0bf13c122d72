"""The planners keep their last decision per (organisation, subject, plugin). How the log keeps them is a case
of the store contract suite; counting and pruning them, of tests/contract/test_decisions_sql.py."""

from katsched.core.rules import Reason
from tests.world import ORG, World, boefje, hostname, mutation, raw_event


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
