"""The store contract suite, housekeeping: the sweeps and the retention job (`schedulers.sweeps`) through the
`Housekeeping` port, on every implementation (in memory, SQLite, PostgreSQL)."""

from datetime import timedelta

from katsched.core.models import TaskStatus
from katsched.core.ports import DecisionRecord
from katsched.schedulers.sweeps import (
    LeaseTimeouts,
    RetentionPolicy,
    prunable,
    prune_retention,
    sweep_stalled,
)
from katsched.testing import FakeClock
from tests.contract.test_store_contract import draft, pushed
from tests.stores import Stores
from tests.world import ORG

S = TaskStatus
REQUEUE = {"boefje": LeaseTimeouts(timedelta(minutes=1), timedelta(minutes=10), "requeue", max_attempts=3)}
FAIL = {"boefje": LeaseTimeouts(timedelta(minutes=1), timedelta(minutes=10), "fail")}


def test_a_lost_dispatch_is_queued_again_until_its_attempts_run_out(stores: Stores, clock: FakeClock) -> None:
    (task,) = pushed(stores, draft("a"))
    for attempt in (1, 2):
        stores.queue.pop("boefje")
        clock.advance(seconds=61)
        summary = sweep_stalled(stores.housekeeping, clock, REQUEUE)
        assert summary.requeued["boefje"] == [task.id] and summary.swept["boefje"] == []
        reason = stores.queue.history(task.id)[-1][2]
        assert reason == f"dispatch_lease_expired requeued attempt={attempt} max_attempts=3"
    stores.queue.pop("boefje")
    clock.advance(seconds=61)
    summary = sweep_stalled(stores.housekeeping, clock, REQUEUE)
    assert summary.requeued["boefje"] == [] and summary.swept["boefje"] == [task.id]
    assert stores.queue.get(task.id).status is S.FAILED
    assert stores.queue.history(task.id)[-1][2] == "dispatch_lease_expired attempts=3"


def test_a_lost_dispatch_whose_twin_is_queued_is_failed(stores: Stores, clock: FakeClock) -> None:
    (task,) = pushed(stores, draft("a"))
    stores.queue.pop("boefje")
    (twin,) = pushed(stores, draft("a"))
    clock.advance(seconds=61)
    summary = sweep_stalled(stores.housekeeping, clock, REQUEUE)
    assert summary.requeued["boefje"] == [] and summary.swept["boefje"] == [task.id]
    assert stores.queue.get(twin.id).status is S.QUEUED


def test_silent_runners_and_unstarted_dispatches_are_failed(stores: Stores, clock: FakeClock) -> None:
    running, waiting = pushed(stores, draft("a"), draft("b"))
    stores.queue.pop("boefje", limit=2)
    stores.queue.set_status(running.id, S.RUNNING)
    clock.advance(seconds=61)
    assert sweep_stalled(stores.housekeeping, clock, FAIL).swept["boefje"] == [waiting.id]
    clock.advance(minutes=10)
    assert sweep_stalled(stores.housekeeping, clock, FAIL).swept["boefje"] == [running.id]
    assert stores.queue.history(running.id)[-1] == (S.FAILED, clock.now(), "lease_expired")


def test_retention_prunes_finished_tasks_history_and_decisions_in_batches(
    stores: Stores, clock: FakeClock
) -> None:
    old = pushed(stores, *(draft(f"old{i}") for i in range(3)))
    for task in old:
        stores.queue.cancel(task.id)
    stores.decisions.record([DecisionRecord(ORG, "old0", "p", "boefje", "skip", "x", clock.now())])
    clock.advance(days=40)
    (kept,) = pushed(stores, draft("new"))
    policy = RetentionPolicy(tasks_days=30, history_days=30, batch_size=2)
    assert prunable(stores.housekeeping, clock, policy).tasks == 3
    summary = prune_retention(stores.housekeeping, clock, policy)
    assert (summary.tasks, summary.decisions, summary.complete) == (3, 1, True)
    assert [task.id for task in stores.all_tasks("boefje")] == [kept.id]
    assert stores.decisions.last(ORG, "old0") == {}
    assert prunable(stores.housekeeping, clock, policy).tasks == 0
