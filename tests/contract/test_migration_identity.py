"""The migration to one QUEUED task per identity (issue 10) resolves the twins an earlier schema let in: the
task that pops first stays queued, the others are cancelled with a reason in their history; other statuses,
other schedulers and lone tasks are left alone. On a SQLite file and on a PostgreSQL database of its own."""

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from katsched.core.models import TaskStatus
from katsched.errors import InvalidValue
from katsched.store.engine import build_engine, write
from katsched.store.migrate import upgrade
from katsched.store.queue import SqlTaskQueue
from katsched.store.tables import tasks
from katsched.testing import FakeClock
from tests.conftest import scratch_postgres

BEFORE = "0011"
REASON = "superseded: another task of the same identity was queued first (migration 0012)"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_before(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to the revision before the unique index."""
    if request.param == "sqlite":
        engine = build_engine(f"sqlite:///{tmp_path / 'old.db'}")
        upgrade(engine, BEFORE)
        yield engine
        engine.dispose()
        return
    with scratch_postgres("katsched_identity") as url:
        engine = build_engine(url)
        upgrade(engine, BEFORE)
        yield engine
        engine.dispose()


def row(clock: FakeClock, identity: str, priority: int, minutes: int, **other: Any) -> dict[str, Any]:
    task_id = uuid.uuid4()
    at = clock.now() + timedelta(minutes=minutes)
    values = {
        "id": task_id,
        "scheduler_id": "boefje",
        "organisation": "org1",
        "priority": priority,
        "status": "queued",
        "type": "boefje",
        "hash": identity,
        "data": {"id": str(task_id)},
        "created_at": at,
        "modified_at": at,
    }
    return values | other


def test_twins_are_cancelled_but_the_one_that_pops_first(engine_before: Engine, clock: FakeClock) -> None:
    rows = [
        row(clock, "x" * 32, 5, 0),
        row(clock, "x" * 32, 3, 2),  # pops first: the best priority, then the oldest
        row(clock, "x" * 32, 3, 3),
        row(clock, "x" * 32, 1, 0, status="dispatched"),
        row(clock, "x" * 32, 9, 0, scheduler_id="normalizer", type="normalizer"),
        row(clock, "y" * 32, 8, 1),
    ]
    with write(engine_before) as connection:
        connection.execute(insert(tasks), rows)
    upgrade(engine_before)
    queue = SqlTaskQueue(engine_before, clock)
    statuses = [queue.get(r["id"]).status for r in rows]
    C, Q = TaskStatus.CANCELLED, TaskStatus.QUEUED
    assert statuses == [C, Q, C, TaskStatus.DISPATCHED, Q, Q]
    assert queue.qsize("boefje") == 2, "the counters follow the moves"
    for cancelled in (rows[0], rows[2]):
        last_status, changed_at, reason = queue.history(cancelled["id"])[-1]
        assert (last_status, reason) == (C, REASON)
        assert queue.get(cancelled["id"]).modified_at == changed_at
    refused = "ix_tasks_queued_identity|UNIQUE constraint failed: tasks.scheduler_id, tasks.hash"
    with pytest.raises(InvalidValue, match=refused), write(engine_before) as connection:
        connection.execute(insert(tasks), row(clock, "y" * 32, 4, 5))
