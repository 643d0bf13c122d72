"""Re-ranking rewrites a moved rank at most once per RERANK_SPACING (issue 15: the idle daemon's work at a
million queued tasks), on a real database (SQLite and PostgreSQL)."""

from datetime import timedelta

import pytest

from katsched.core.ranking import RERANK_SPACING, RankFacts, staleness
from tests.unit.test_planner_rerank import plan_again, priorities, ran_a_day_ago
from tests.world import ORG, World, boefje


@pytest.fixture
def world(world_on_sql: World) -> World:
    return world_on_sql


def test_a_moved_rank_is_rewritten_once_the_spacing_has_passed_not_at_each_step(world: World) -> None:
    world.add_plugin(boefje())
    [reference] = ran_a_day_ago(world, "spaced.org")
    last_run_at = world.clock.now() - timedelta(days=1)
    planner = world.boefjes()
    plan_again(world, planner, reference)
    written = priorities(world)[reference]
    assert written == staleness(RankFacts(last_run_at=last_run_at), world.clock.now()) == 857

    world.clock.advance(seconds=RERANK_SPACING.total_seconds() - 1)
    assert staleness(RankFacts(last_run_at=last_run_at), world.clock.now()) < written  # it has moved
    assert planner.rerank_queued(ORG) == 0
    assert priorities(world)[reference] == written

    world.clock.advance(seconds=1)
    assert planner.rerank_queued(ORG) == 1
    rewritten = priorities(world)[reference]
    assert rewritten == staleness(RankFacts(last_run_at=last_run_at), world.clock.now()) < written
    assert planner.rerank_queued(ORG) == 0  # the next rewrite is another spacing away
