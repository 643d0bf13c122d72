"""Agreement: for 1,000 random (organisation, object, boefje) combinations, the verdict of `explain` is what a
real planner run then does. In-process, on the in-memory KAT services and store, seeded."""

import random
from datetime import timedelta
from typing import Any

from katsched.core.explain import VerdictKind
from katsched.core.models import BoefjeConfig, MutationOperation, Organisation, TaskStatus
from katsched.core.rules import Reason
from katsched.schedulers.explain import Explainer
from katsched.testing import FakeClock
from tests.conftest import START
from tests.world import World, boefje, boefje_meta, hostname, memory_world, mutation

SEED = 20261203
COMBINATIONS = 1000
ORGS = ("org1", "org2", "org3")
BOEFJES = ("dns-records", "nmap", "whois", "ssl")
NAMES = tuple(f"h{i}.example" for i in range(4))


def random_plugin(rng: random.Random, plugin_id: str) -> Any:
    return boefje(
        plugin_id,
        enabled=rng.random() < 0.8,
        scan_level=rng.choice([None, 0, 1, 1, 2, 2, 3, 4]),
        run_on=rng.choice([None, None, ["create"], ["update"], ["create", "update"]]),
        interval=rng.choice([None, None, 30, 120]),
        consumes=["Hostname"] if rng.random() < 0.9 else ["IPAddressV4"],
    )


def shuffle_world(rng: random.Random, world: World) -> None:
    """Change a little of everything the planner looks at."""
    org = rng.choice(ORGS)
    roll = rng.random()
    if roll < 0.25:
        world.add_plugin(random_plugin(rng, rng.choice(BOEFJES)), org)
    elif roll < 0.45:
        world.add_object(hostname(rng.choice(NAMES), rng.choice([None, 0, 1, 2, 3, 4])), org)
    elif roll < 0.6:
        ooi = hostname(rng.choice(NAMES))
        started = world.clock.now() - timedelta(hours=rng.uniform(0, 48))
        world.raw.add(boefje_meta(rng.choice(BOEFJES), ooi, started, started + timedelta(minutes=1), org))
    elif roll < 0.85:
        finish_some(rng, world)
    world.clock.advance(hours=rng.choice([0, 0, 0.2, 1, 6, 20, 30]))


def finish_some(rng: random.Random, world: World) -> None:
    """Runners pop a few tasks and leave them running, dispatched (to stall) or finished."""
    for task in world.queue.pop("boefje", limit=rng.randint(1, 3)):
        status = rng.choice(
            [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.RUNNING, TaskStatus.DISPATCHED]
        )
        if status is not TaskStatus.DISPATCHED:
            world.queue.set_status(task.id, status)


def build_world(rng: random.Random) -> World:
    world = memory_world(FakeClock(START))
    for org in ORGS:
        world.catalog.add_organisation(Organisation(id=org))
        for plugin_id in BOEFJES:
            world.add_plugin(random_plugin(rng, plugin_id), org)
        for name in NAMES:
            world.add_object(hostname(name, rng.choice([None, 0, 1, 2, 3, 4])), org)
    for number, org in enumerate(ORGS):  # same settings in two organisations: deduplicated runs
        enabled = org != "org3"
        world.catalog.add_config(
            BoefjeConfig(id=number, boefje_id="dns-records", enabled=enabled, organisation_id=org)
        )
    return world


def test_explain_agrees_with_what_the_planner_then_does() -> None:
    rng = random.Random(SEED)
    world = build_world(rng)
    planner = world.boefjes()
    explainer = Explainer(
        boefjes=planner,
        normalizers=world.normalizers(),
        catalog=world.catalog,
        objects=world.graph,
        tasks=world.task_store,
        schedules=world.schedule_store,
        decisions=world.decisions,
        clock=world.clock,
    )
    seen: dict[str, int] = {}
    for _ in range(COMBINATIONS):
        shuffle_world(rng, world)
        org, name, plugin_id = rng.choice(ORGS), rng.choice(NAMES), rng.choice(BOEFJES)
        operation = rng.choice([MutationOperation.CREATE, MutationOperation.UPDATE])
        ooi = world.graph.get_object(org, f"Hostname|internet|{name}", valid_time=world.clock.now())
        assert ooi is not None
        told = explainer.explain_object(org, ooi.primary_key, plugin_id, operation)
        [entry] = told.boefjes
        seen[entry.reason] = seen.get(entry.reason, 0) + 1

        world.boefjes().plan_for_mutation(mutation(ooi, operation.value, org))
        done = world.decisions.last(org, ooi.primary_key).get(plugin_id)
        if entry.reason == Reason.NOT_CONSUMED:  # the planner does not consider it at all
            assert done is None or done.decided_at < world.clock.now(), entry
            continue
        assert done is not None and done.decided_at == world.clock.now()
        assert (done.action == "run") == (entry.kind is VerdictKind.QUEUE), (entry, done)
        assert done.reason == entry.reason, (entry, done)
        if done.task_id is not None:
            pushed = world.queue.get(done.task_id)
            assert pushed.hash == entry.task_hash and pushed.created_at == world.clock.now()
    # the random walk reached every verdict the rules can give on a mutation
    assert set(seen) >= {
        "not_active", "previous_stalled", "plugin_disabled", "plugin_scan_level_unknown", "no_scan_profile",
        "scan_level_too_low", "run_on_excludes_create", "run_on_excludes_update", "within_grace_period",
        "within_interval", "already_active", "not_consumed",
    }, seen  # fmt: skip
