"""The store contract suite, identity: one QUEUED task per (scheduler, hash) whatever moves a task back to
QUEUED (issue 10). On every implementation (in memory, SQLite, PostgreSQL)."""

from datetime import timedelta

import pytest

from katsched.core.models import TaskStatus
from katsched.errors import NotAllowed
from katsched.schedulers.sweeps import LeaseTimeouts, sweep_stalled
from katsched.testing import FakeClock
from tests.contract.test_store_contract import draft, pushed
from tests.stores import Stores

S = TaskStatus
REQUEUE = {"boefje": LeaseTimeouts(timedelta(minutes=1), timedelta(minutes=10), "requeue", max_attempts=3)}


def test_of_two_lost_dispatches_of_one_identity_only_the_newest_is_queued_again(
    stores: Stores, clock: FakeClock
) -> None:
    (older,) = pushed(stores, draft("a"))
    stores.queue.pop("boefje")
    clock.advance(seconds=1)
    (newer,) = pushed(stores, draft("a"))
    stores.queue.pop("boefje")
    clock.advance(seconds=61)
    summary = sweep_stalled(stores.housekeeping, clock, REQUEUE)
    assert summary.requeued["boefje"] == [newer.id] and summary.swept["boefje"] == [older.id]
    assert [task.id for task in stores.queue.peek("boefje", limit=10)] == [newer.id]


def test_a_task_is_not_moved_back_to_queued_beside_a_queued_twin(stores: Stores) -> None:
    (first,) = pushed(stores, draft("a"))
    stores.queue.pop("boefje")
    (twin,) = pushed(stores, draft("a"))
    for move in (
        lambda: stores.task_queue.update(first.id, {"status": S.QUEUED}),
        lambda: stores.queue.set_status(first.id, S.QUEUED),
    ):
        with pytest.raises(NotAllowed, match=f"task {twin.id} with the same identity is already queued") as e:
            move()
        assert e.value.twin_id == twin.id
    assert stores.queue.get(first.id).status is S.DISPATCHED
    stores.queue.pop("boefje")
    assert stores.task_queue.update(first.id, {"status": S.QUEUED}).status is S.QUEUED
