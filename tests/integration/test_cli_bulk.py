"""`tasks requeue`, `tasks cancel` (bulk) and `queue purge` through the real command line, on SQLite and
PostgreSQL: counts, the confirmation prompt, history rows, and a purge beside a process that pops."""

import json
import os
import pty
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from katsched.core.models import TaskStatus
from katsched.core.ports import TaskDraft
from katsched.store.engine import write
from katsched.store.queue import SqlTaskQueue
from katsched.store.tables import task_events, tasks
from katsched.testing import FakeClock
from tests.integration.conftest import write_config
from tests.integration.support import Run, queued_boefje_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def config_file(tmp_path: Path, any_database_url: str) -> Path:
    return write_config(tmp_path, any_database_url)


@pytest.fixture
def clock() -> FakeClock:
    """Tasks are arranged three hours in the past, so that --older-than can tell them from fresh ones."""
    return FakeClock(datetime.now(UTC) - timedelta(hours=3))


@pytest.fixture
def queue(any_engine: Engine, clock: FakeClock) -> SqlTaskQueue:
    return SqlTaskQueue(any_engine, clock)


def boefje(ooi: str, org: str = "org1", plugin: str = "dns-records") -> dict[str, Any]:
    return {"boefje": {"id": plugin}, "input_ooi": ooi, "organization": org}


def push(queue: SqlTaskQueue, ooi: str, org: str = "org1", scheduler_plugin: str = "dns-records") -> str:
    return str(queue.push(TaskDraft("boefje", org, 5, boefje(ooi, org, scheduler_plugin))).id)


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return {str(i): s for i, s in connection.execute(select(tasks.c.id, tasks.c.status))}


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_purge_counts_asks_and_cancels_only_queued_tasks(
    katsched: Run, queue: SqlTaskQueue, any_engine: Engine
) -> None:
    queued = [push(queue, f"Hostname|internet|h{i}") for i in range(5)]
    held = queue.pop("boefje", limit=2)
    queue.push(TaskDraft("report", "org1", 5, {"report_recipe_id": "r1", "organisation_id": "org1"}))
    refused = katsched("queue", "purge", "-s", "boefje")  # stdin is a pipe: no one to ask
    assert refused.returncode == 2
    assert "--yes" in refused.stderr and "purge 3 queued task(s) from boefje" in refused.stderr
    assert list(statuses(any_engine).values()).count("queued") == 4

    document = as_json(katsched("queue", "purge", "-s", "boefje", "--yes", "--json"))
    assert (document["action"], document["matched"], document["changed"]) == ("purge", 3, 3)
    now = statuses(any_engine)
    assert sorted(document["task_ids"]) == sorted(set(queued) - {str(t.id) for t in held})
    assert all(now[str(task.id)] == "dispatched" for task in held)
    assert list(now.values()).count("queued") == 1  # the report queue was not touched
    status, _at, reason = queue.history(uuid.UUID(document["task_ids"][0]))[-1]
    assert status is TaskStatus.CANCELLED and reason == "purged by an operator (katsched queue purge)"

    nothing = as_json(katsched("queue", "purge", "-s", "boefje", "--json"))  # nothing left: no prompt
    assert (nothing["matched"], nothing["changed"]) == (0, 0)


def run_at_terminal(config: Path, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer.encode())
        command = [sys.executable, "-m", "katsched", *args, "--config", str(config)]
        return subprocess.run(
            command, stdin=follower, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        os.close(leader)
        os.close(follower)


def test_a_person_is_asked_and_no_means_nothing_changes(
    config_file: Path, queue: SqlTaskQueue, any_engine: Engine
) -> None:
    for i in range(3):
        push(queue, f"Hostname|internet|h{i}")
    declined = run_at_terminal(config_file, "n\n", "queue", "purge", "-s", "boefje")
    assert declined.returncode == 1
    assert "purge 3 queued task(s) from boefje? [y/N]" in declined.stderr
    assert "nothing changed" in declined.stderr
    assert set(statuses(any_engine).values()) == {"queued"}
    accepted = run_at_terminal(config_file, "y\n", "queue", "purge", "-s", "boefje")
    assert accepted.returncode == 0, accepted.stderr
    assert "purge: 3 queued task(s) from boefje" in accepted.stdout
    assert set(statuses(any_engine).values()) == {"cancelled"}


def test_requeue_moves_failed_and_cancelled_back_and_records_the_operator(
    katsched: Run, queue: SqlTaskQueue, any_engine: Engine
) -> None:
    failed, cancelled, completed = (push(queue, f"Hostname|internet|h{i}") for i in range(3))
    popped = {str(task.id): task for task in queue.pop("boefje", limit=3)}
    queue.set_status(popped[failed].id, TaskStatus.FAILED, "boefje crashed")
    queue.cancel(popped[cancelled].id)
    queue.set_status(popped[completed].id, TaskStatus.COMPLETED)

    document = as_json(katsched("tasks", "requeue", "--yes", "--json"))
    assert (document["selected"], document["changed"], document["queued_twin"]) == (2, 2, 0)
    assert sorted(document["task_ids"]) == sorted([failed, cancelled])
    now = statuses(any_engine)
    assert (now[failed], now[cancelled], now[completed]) == ("queued", "queued", "completed")
    shown = as_json(katsched("tasks", "show", failed, "--json"))
    assert [h["status"] for h in shown["history"]] == ["queued", "dispatched", "failed", "queued"]
    assert shown["history"][-1]["reason"] == "requeued by an operator (katsched tasks requeue)"
    assert shown["priority"] == 5 and shown["id"] == failed

    # requeued, a task is poppable again, and a runner's move from a finished status is still refused
    assert {str(t.id) for t in queue.pop("boefje", limit=5)} == {failed, cancelled}
    refused = katsched("tasks", "set-status", completed, "queued")
    assert refused.returncode == 6 and "the task is finished" in refused.stderr
    not_requeueable = katsched("tasks", "requeue", "--status", "completed", "--yes")
    assert not_requeueable.returncode == 6 and "from completed to queued" in not_requeueable.stderr


def test_requeue_never_makes_two_queued_tasks_of_one_identity(
    katsched: Run, queue: SqlTaskQueue, any_engine: Engine, clock: FakeClock
) -> None:
    older = push(queue, "Hostname|internet|same")
    queue.set_status(queue.pop("boefje")[0].id, TaskStatus.FAILED)
    clock.advance(seconds=60)
    newer = push(queue, "Hostname|internet|same")  # the same identity, again
    queue.set_status(queue.pop("boefje")[0].id, TaskStatus.FAILED)
    twin_of = push(queue, "Hostname|internet|other")
    queue.set_status(queue.pop("boefje")[0].id, TaskStatus.FAILED)
    push(queue, "Hostname|internet|other")  # queued again by a planner meanwhile

    document = as_json(katsched("tasks", "requeue", "--yes", "--json"))
    assert (document["selected"], document["changed"], document["queued_twin"]) == (3, 1, 2)
    now = statuses(any_engine)
    assert (now[newer], now[older], now[twin_of]) == ("queued", "failed", "failed")
    single = katsched("tasks", "requeue", twin_of)
    assert single.returncode == 4 and "already queued again" in single.stderr
    finished = katsched("tasks", "requeue", newer)
    assert finished.returncode == 6 and "only failed or cancelled tasks" in finished.stderr


def test_bulk_cancel_narrows_by_org_age_and_filter(
    katsched: Run, queue: SqlTaskQueue, any_engine: Engine
) -> None:
    old_acme = push(queue, "Hostname|internet|a1", org="acme")
    old_nmap = push(queue, "Hostname|internet|a2", org="acme", scheduler_plugin="nmap")
    old_globex = push(queue, "Hostname|internet|g1", org="globex")
    fresh = SqlTaskQueue(any_engine, FakeClock(datetime.now(UTC)))
    new_acme = str(fresh.push(TaskDraft("boefje", "acme", 5, boefje("Hostname|internet|a3", "acme"))).id)

    nmap_only = '[{"column": "data", "field": "boefje__id", "operator": "==", "value": "nmap"}]'
    by_filter = as_json(katsched("tasks", "cancel", "--filter", nmap_only, "--yes", "--json"))
    assert by_filter["task_ids"] == [old_nmap]
    by_age = as_json(katsched("tasks", "cancel", "--org", "acme", "--older-than", "1h", "--yes", "--json"))
    assert by_age["task_ids"] == [old_acme]
    now = statuses(any_engine)
    assert (now[old_globex], now[new_acme]) == ("queued", "queued")

    assert as_json(katsched("tasks", "cancel", new_acme, "--json"))["status"] == "cancelled"
    mixed = katsched("tasks", "cancel", old_globex, "--org", "globex")
    assert mixed.returncode == 2 and "not both" in mixed.stderr
    bad_age = katsched("tasks", "cancel", "--older-than", "soon", "--yes")
    assert bad_age.returncode == 2 and "not a duration" in bad_age.stderr
    finished = katsched("tasks", "cancel", "--status", "completed", "--yes")
    assert finished.returncode == 6


PURGE_TASKS = 3000

POPPER = """
import json, sys
from katsched.clock import SystemClock
from katsched.store.engine import build_engine
from katsched.store.queue import SqlTaskQueue

queue = SqlTaskQueue(build_engine(sys.argv[1]), SystemClock())
seen, empty = [], 0
while empty < 3:
    popped = queue.pop("boefje", limit=5)
    empty = 0 if popped else empty + 1
    seen.extend(str(task.id) for task in popped)
print(json.dumps(seen))
"""


def seed(engine: Engine, count: int) -> None:
    with write(engine) as connection:
        connection.execute(insert(tasks), queued_boefje_rows(count, datetime.now(UTC)))


def test_a_purge_beside_a_popping_process_hands_out_nothing_twice(
    katsched: Run, any_database_url: str, any_engine: Engine
) -> None:
    seed(any_engine, PURGE_TASKS)
    popper = subprocess.Popen(
        [sys.executable, "-c", POPPER, any_database_url], stdout=subprocess.PIPE, text=True
    )
    purged = as_json(katsched("queue", "purge", "-s", "boefje", "--yes", "--json"))
    popped = json.loads(popper.communicate(timeout=300)[0])
    assert popper.returncode == 0
    purged_ids = set(purged["task_ids"])
    assert len(popped) == len(set(popped)) and not purged_ids & set(popped), "a task was popped and purged"
    assert len(popped) + purged["changed"] == PURGE_TASKS, "a task was lost"
    now = statuses(any_engine)
    assert sum(1 for s in now.values() if s == "dispatched") == len(popped)
    assert sum(1 for s in now.values() if s == "cancelled") == purged["changed"]
    with any_engine.connect() as connection:
        cancelled_events = connection.execute(
            select(task_events.c.task_id).where(task_events.c.status == "cancelled")
        ).all()
    assert len(cancelled_events) == purged["changed"]  # one history row per purged task
