"""`katsched schedules …` and `katsched db prune` through the real command line, on SQLite and PostgreSQL."""

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from katsched.core.models import TaskStatus
from katsched.core.ports import TaskDraft
from katsched.store.daemon_state import DaemonState, DaemonStateStore
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.store.tables import task_events, tasks
from katsched.testing import FakeClock
from tests.integration.conftest import write_config
from tests.integration.support import Run

pytestmark = pytest.mark.integration

RETENTION = "[retention]\ntasks_days = 1\nhistory_days = 2\n"


@pytest.fixture
def config_file(tmp_path: Path, any_database_url: str) -> Path:
    return write_config(tmp_path, any_database_url, RETENTION)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def boefje(ooi: str) -> dict[str, Any]:
    return {"boefje": {"id": "dns-records"}, "input_ooi": ooi, "organization": "acme"}


def test_schedules_list_show_switch_and_run_now(katsched: Run, any_engine: Engine) -> None:
    now = datetime.now(UTC)
    store = SqlScheduleStore(any_engine, FakeClock(now))
    daily = store.create("boefje", "acme", boefje("Hostname|internet|a"), "a" * 32, schedule="0 3 * * *")
    report = store.create(
        "report", "acme", {"report_recipe_id": "r1", "organisation_id": "acme"}, "b" * 32, enabled=False
    )
    task = SqlTaskQueue(any_engine, FakeClock(now)).push(
        TaskDraft("boefje", "acme", 5, boefje("Hostname|internet|a"), schedule_id=daily.id)
    )
    listed = as_json(katsched("schedules", "ls", "--json"))
    assert listed["count"] == 2 and {s["id"] for s in listed["results"]} == {str(daily.id), str(report.id)}
    assert [s["id"] for s in as_json(katsched("schedules", "ls", "--disabled", "--json"))["results"]] == [
        str(report.id)
    ]
    shown = as_json(katsched("schedules", "show", str(daily.id), "--json"))
    assert shown["schedule"] == "0 3 * * *" and [t["id"] for t in shown["tasks"]] == [str(task.id)]

    refused = katsched("schedules", "run-now", str(report.id))
    assert refused.returncode == 4 and "is disabled" in refused.stderr
    assert as_json(katsched("schedules", "enable", str(report.id), "--json"))["enabled"] is True
    due = as_json(katsched("schedules", "run-now", str(report.id), "--json"))
    deadline = datetime.fromisoformat(due["deadline_at"].replace("Z", "+00:00"))
    assert now - timedelta(seconds=1) <= deadline <= datetime.now(UTC)
    later = SqlScheduleStore(any_engine, FakeClock(datetime.now(UTC) + timedelta(seconds=1)))
    assert [s.id for s in later.due("report", 10)] == [report.id]  # the next rescheduling run plans it
    assert katsched("schedules", "disable", str(daily.id)).returncode == 0
    assert store.get(daily.id).enabled is False
    missing = katsched("schedules", "show", "00000000-0000-0000-0000-000000000001")
    assert missing.returncode == 3 and "schedule not found" in missing.stderr


def test_schedules_ls_never_creates_a_database(tmp_path: Path) -> None:
    import sys

    absent = tmp_path / "absent.db"
    config = tmp_path / "absent.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{absent}"\n')
    command = [sys.executable, "-m", "katsched", "schedules", "ls", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 7 and "no database at" in result.stderr
    assert not absent.exists()


def rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return (
            int(connection.execute(select(func.count()).select_from(tasks)).scalar_one()),
            int(connection.execute(select(func.count()).select_from(task_events)).scalar_one()),
        )


def test_db_prune_counts_then_deletes_what_the_retention_policy_says(
    katsched: Run, any_engine: Engine
) -> None:
    now = datetime.now(UTC)
    old = FakeClock(now - timedelta(days=3))
    queue = SqlTaskQueue(any_engine, old)
    for i in range(4):  # finished three days ago: past tasks_days, they go with their history (3 rows each)
        queue.push(TaskDraft("boefje", "acme", 5, boefje(f"Hostname|internet|old{i}")))
        [popped] = queue.pop("boefje")
        queue.set_status(popped.id, TaskStatus.COMPLETED)
    fresh = SqlTaskQueue(any_engine, FakeClock(now))
    fresh.push(TaskDraft("boefje", "acme", 5, boefje("Hostname|internet|fresh")))
    [recent] = fresh.pop("boefje")
    fresh.set_status(recent.id, TaskStatus.FAILED)  # finished, but recently: kept
    waiting = queue.push(TaskDraft("boefje", "acme", 5, boefje("Hostname|internet|waiting")))  # kept
    gone = old.now()
    DaemonStateStore(any_engine).register(DaemonState("old:1", "old", 1, "0.1.0", gone, gone))
    before = rows(any_engine)

    counted = as_json(katsched("db", "prune", "--dry-run", "--json"))
    # tasks: the four finished; history: the waiting task's queued row of three days ago; one silent daemon
    assert counted == {"dry_run": True, "tasks": 4, "history": 1, "daemons": 1}
    assert rows(any_engine) == before
    pruned = as_json(katsched("db", "prune", "--json"))
    assert pruned == {"dry_run": False, "tasks": 4, "history": 1, "daemons": 1}
    assert rows(any_engine) == (before[0] - 4, before[1] - 4 * 3 - 1)
    assert (
        queue.get(waiting.id).status is TaskStatus.QUEUED and fresh.get(recent.id).status is TaskStatus.FAILED
    )
    again = katsched("db", "prune", "--dry-run")
    assert again.returncode == 0
    assert "would delete 0 finished task(s) older than 1 days, 0 history row(s)" in " ".join(
        again.stdout.split()
    )
