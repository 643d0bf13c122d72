"""The bulk statements behind `tasks requeue/cancel` and `queue purge`, on SQLite and PostgreSQL."""

from datetime import timedelta

from sqlalchemy import Engine

from katsched.core.models import TaskStatus
from katsched.core.ports import TaskDraft
from katsched.store import bulk
from katsched.store.queue import SqlTaskQueue
from katsched.testing import FakeClock

QUEUED = frozenset({TaskStatus.QUEUED})


def push(queue: SqlTaskQueue, count: int, org: str = "org1", first: int = 0) -> None:
    for i in range(first, first + count):
        data = {"boefje": {"id": "dns"}, "input_ooi": f"Hostname|internet|{org}{i}", "organization": org}
        queue.push(TaskDraft("boefje", org, 5, data))


def test_batches_stop_at_the_agreed_number_or_when_nothing_is_left(engine: Engine, clock: FakeClock) -> None:
    queue = SqlTaskQueue(engine, clock)
    push(queue, 7)
    chosen = bulk.Selection(QUEUED, scheduler_id="boefje")
    first = bulk.change_status(engine, clock, chosen, TaskStatus.CANCELLED, "test", at_most=5, batch_size=2)
    assert len(first) == len(set(first)) == 5  # three batches: 2, 2 and the 1 still agreed to
    assert bulk.count(engine, chosen) == 2
    rest = bulk.change_status(engine, clock, chosen, TaskStatus.CANCELLED, "test", at_most=50, batch_size=2)
    assert len(rest) == 2 and bulk.count(engine, chosen) == 0
    assert queue.history(rest[0])[-1][2] == "test"


def test_the_selection_narrows_by_organisation_and_age(engine: Engine, clock: FakeClock) -> None:
    queue = SqlTaskQueue(engine, clock)
    push(queue, 2, "acme")
    clock.advance(hours=2)
    push(queue, 3, "acme", first=2)
    push(queue, 4, "globex")
    assert bulk.count(engine, bulk.Selection(QUEUED, organisation="acme")) == 5
    older = bulk.Selection(QUEUED, organisation="acme", created_before=clock.now() - timedelta(hours=1))
    assert bulk.count(engine, older) == 2
    assert bulk.count(engine, bulk.Selection(frozenset({TaskStatus.FAILED}))) == 0
