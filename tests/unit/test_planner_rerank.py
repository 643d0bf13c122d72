"""Re-ranking (issue 15, issue 11): only the automatic ranks that moved are read and rewritten, a bounded
number per run, and a priority given by hand is kept (through the API and the CLI, on a real database:
tests/contract/test_rerank_manual.py)."""

from datetime import timedelta

import pytest

from katsched.core.ranking import RankFacts, staleness
from katsched.schedulers import boefje as boefje_planner
from katsched.schedulers.boefje import BoefjePlanner
from tests.world import ORG, S, World, boefje, boefje_data, hostname, mutation


def ran_a_day_ago(world: World, *names: str) -> list[str]:
    """Plan and complete each object's boefje task, then let a day pass: their next tasks rank 857."""
    oois = [world.add_object(hostname(name)) for name in names]
    world.boefjes().plan_for_mutations([mutation(ooi) for ooi in oois])
    for task in world.queue.pop("boefje", limit=len(oois)):
        world.queue.set_status(task.id, S.COMPLETED)
    world.clock.advance(days=1)
    return [ooi.primary_key for ooi in oois]


def plan_again(world: World, planner: BoefjePlanner, *references: str) -> None:
    planner.plan_for_mutations([mutation(hostname(r.rsplit("|", 1)[1])) for r in references])


def priorities(world: World) -> dict[str, int | None]:
    return {t.data["input_ooi"]: t.priority for t in world.queued()}


def test_a_run_reads_only_ranks_that_moved_and_at_most_its_batches(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.add_plugin(boefje())
    references = ran_a_day_ago(world, *(f"h{i}.org" for i in range(5)))
    last_run_at = world.clock.now() - timedelta(days=1)
    planner = world.boefjes(reschedule_batch_size=2)
    plan_again(world, planner, *references)
    world.push_manual("boefje", 600, boefje_data("dns-records", "manual"))
    assert planner.rerank_queued(ORG) == 0  # nothing moved yet: nothing to read
    world.clock.advance(hours=1)
    expected = staleness(RankFacts(last_run_at=last_run_at), world.clock.now())
    assert expected < 857
    monkeypatch.setattr(boefje_planner, "RERANK_BATCHES_PER_RUN", 2)
    assert planner.rerank_queued(ORG) == 4  # two batches of two; the fifth waits for the next run
    assert sorted(priorities(world).values()) == [600, expected, expected, expected, expected, 857]
    assert planner.rerank_queued(ORG) == 1
    assert sorted(priorities(world).values()) == [600, *[expected] * 5]
    assert planner.rerank_queued(ORG) == 0
