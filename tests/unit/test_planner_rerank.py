"""Re-ranking (issue 15, issue 11): only the automatic ranks that moved are read and rewritten, a bounded
number per run, and a priority given through the API or the CLI is kept. On SQLite and PostgreSQL."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from katsched.api import create_app
from katsched.cli.queue import app as queue_cli
from katsched.core.models import Task
from katsched.core.ranking import RankFacts, staleness
from katsched.schedulers import boefje as boefje_planner
from katsched.schedulers.boefje import BoefjePlanner
from katsched.store.queue import NewTask
from tests.unit.test_planner_store import ORG, S, World, boefje, boefje_data, hostname, mutation, world

__all__ = ["world"]


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


def cli_push(world: World, tmp_path: Path, reference: str, priority: int) -> None:
    config = tmp_path / "config.toml"
    url = world.engine.url.render_as_string(hide_password=False)
    config.write_text(f'[database]\nurl = "{url}"\n')
    arguments = ["push", "-s", "boefje", "-o", ORG, "-p", str(priority), "--config", str(config)]
    data = json.dumps(boefje_data("dns-records", reference))
    result = CliRunner().invoke(queue_cli, [*arguments, "--data", data])
    assert result.exit_code == 0, result.output


def test_priorities_given_through_the_api_and_the_cli_survive_re_ranking(
    world: World, tmp_path: Path
) -> None:
    world.add_plugin(boefje())
    by_api, by_cli, automatic = ran_a_day_ago(world, "api.org", "cli.org", "auto.org")
    planner = world.boefjes()
    client = TestClient(create_app(world.queue, world.schedule_rows, world.clock))
    pushed = client.post(
        "/schedulers/boefje/push",
        json={"organisation": ORG, "priority": 500, "data": boefje_data("dns-records", by_api)},
    )
    assert pushed.status_code == 201, pushed.text
    cli_push(world, tmp_path, by_cli, 400)
    plan_again(world, planner, automatic)
    assert priorities(world) == {by_api: 500, by_cli: 400, automatic: 3 + 997 * 6 // 7}
    for _ in range(4):  # a week after the last run, the automatic task is most stale
        world.clock.advance(days=1, hours=12)
        assert planner.rerank_queued(ORG) == 1
    assert priorities(world) == {by_api: 500, by_cli: 400, automatic: 3}


def test_a_patched_priority_is_kept_too(world: World) -> None:
    world.add_plugin(boefje())
    [reference] = ran_a_day_ago(world, "patched.org")
    planner = world.boefjes()
    plan_again(world, planner, reference)
    task: Task = world.queued()[0]
    client = TestClient(create_app(world.queue, world.schedule_rows, world.clock))
    assert client.patch(f"/tasks/{task.id}", json={"priority": 50}).status_code == 200
    world.clock.advance(days=3)
    assert planner.rerank_queued(ORG) == 0 and priorities(world) == {reference: 50}


def test_a_run_reads_only_ranks_that_moved_and_at_most_its_batches(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.add_plugin(boefje())
    references = ran_a_day_ago(world, *(f"h{i}.org" for i in range(5)))
    last_run_at = world.clock.now() - timedelta(days=1)
    planner = world.boefjes(reschedule_batch_size=2)
    plan_again(world, planner, *references)
    world.queue.push(NewTask("boefje", ORG, 600, boefje_data("dns-records", "manual")))
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
