"""Re-ranking keeps a priority given through the API or the CLI (issue 15, issue 11): the planner on a real
database (SQLite and PostgreSQL), as the API and the CLI write to it."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from katsched.api import create_app
from katsched.cli.queue import app as queue_cli
from katsched.core.models import Task
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from tests.unit.test_planner_rerank import plan_again, priorities, ran_a_day_ago
from tests.world import ORG, World, boefje, boefje_data


@pytest.fixture
def world(world_on_sql: World) -> World:
    return world_on_sql


def api(world: World) -> TestClient:
    queue, rows = world.queue, world.schedule_rows
    assert isinstance(queue, SqlTaskQueue) and isinstance(rows, SqlScheduleStore)
    return TestClient(create_app(queue, rows, world.clock))


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
    client = api(world)
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
    client = api(world)
    assert client.patch(f"/tasks/{task.id}", json={"priority": 50}).status_code == 200
    world.clock.advance(days=3)
    assert planner.rerank_queued(ORG) == 0 and priorities(world) == {reference: 50}
