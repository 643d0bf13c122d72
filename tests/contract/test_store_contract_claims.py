"""The store contract suite, claims on due schedules: several daemons split the rescheduling between them by
claiming batches of due schedules (`ScheduleStore.claim_due`, `confirm`, `release`), on each implementation
(`stores`: in memory, a SQLite file, PostgreSQL)."""

import threading
import uuid
from datetime import timedelta

from katsched.core.models import Schedule
from katsched.core.ports import ScheduleClaim
from katsched.testing import FakeClock
from tests.contract.test_store_contract_schedules import join, schedule
from tests.stores import Stores
from tests.world import ORG, OTHER

LEASE = timedelta(minutes=2)


def ids(claim: ScheduleClaim) -> list[uuid.UUID]:
    return [s.id for s in claim.schedules]


def many_due(stores: Stores, clock: FakeClock, count: int) -> list[Schedule]:
    """`count` due schedules, the first the oldest."""
    return [
        stores.registry.create(
            "boefje", ORG, {}, f"{i:032x}", deadline_at=clock.now() - timedelta(hours=count - i)
        )
        for i in range(count)
    ]


def test_a_claim_takes_the_oldest_unclaimed_due_schedules_and_the_next_claim_the_rest(
    stores: Stores, clock: FakeClock
) -> None:
    made = many_due(stores, clock, 5)
    schedule(stores, clock, "f", timedelta(minutes=1))  # not due yet
    schedule(stores, clock, "e", timedelta(hours=-9), org=OTHER)
    first = stores.schedules.claim_due("boefje", 3, LEASE, ORG)
    assert ids(first) == [s.id for s in made[:3]]
    assert first.until == clock.now() + LEASE
    assert first.schedules[0] == made[0]  # the schedule as it is, its claim not part of it
    second = stores.schedules.claim_due("boefje", 3, LEASE, ORG)
    assert ids(second) == [s.id for s in made[3:]] and second.token != first.token
    assert stores.schedules.claim_due("boefje", 3, LEASE, ORG).schedules == []
    assert len(stores.schedules.due("boefje", 10, ORG)) == 5  # claimed or not, they are due (a read)
    assert [s.organisation for s in stores.schedules.claim_due("boefje", 10, LEASE).schedules] == [OTHER]


def test_a_released_claim_is_claimable_at_once_and_a_planned_schedule_is_not(
    stores: Stores, clock: FakeClock
) -> None:
    a, b = many_due(stores, clock, 2)
    claim = stores.schedules.claim_due("boefje", 10, LEASE, ORG)
    join(stores, a, "a")  # a is planned: its task is active now
    stores.schedules.set_deadlines({b.id: clock.now() + timedelta(days=1)})  # b is deferred
    stores.schedules.release(claim)
    assert stores.schedules.claim_due("boefje", 10, LEASE, ORG).schedules == []
    stores.schedules.set_deadlines({b.id: clock.now()})  # due again (a queue that was full, say)
    assert ids(stores.schedules.claim_due("boefje", 10, LEASE, ORG)) == [b.id]


def test_a_lapsed_claim_is_claimable_and_its_first_holder_can_neither_confirm_nor_release_it(
    stores: Stores, clock: FakeClock
) -> None:
    a, b = many_due(stores, clock, 2)
    first = stores.schedules.claim_due("boefje", 10, LEASE, ORG)
    clock.advance(seconds=LEASE.total_seconds() - 1)
    assert stores.schedules.claim_due("boefje", 10, LEASE, ORG).schedules == []  # still held
    clock.advance(seconds=1)
    second = stores.schedules.claim_due("boefje", 1, LEASE, ORG)  # the first holder died, say
    assert ids(second) == [a.id]
    assert stores.schedules.confirm(first, LEASE) == {b.id}  # a is the second claimant's now
    stores.schedules.release(first)
    assert ids(stores.schedules.claim_due("boefje", 10, LEASE, ORG)) == [b.id]  # released: anyone's
    assert stores.schedules.claim_due("boefje", 10, LEASE, ORG).schedules == []  # a: still the second's
    assert stores.schedules.confirm(second, LEASE) == {a.id}


def test_confirming_renews_the_claim_from_now(stores: Stores, clock: FakeClock) -> None:
    (a,) = many_due(stores, clock, 1)
    claim = stores.schedules.claim_due("boefje", 10, LEASE, ORG)
    clock.advance(seconds=LEASE.total_seconds() - 1)
    assert stores.schedules.confirm(claim, LEASE) == {a.id}
    clock.advance(seconds=LEASE.total_seconds() - 1)
    assert stores.schedules.claim_due("boefje", 10, LEASE, ORG).schedules == []
    clock.advance(seconds=1)
    assert ids(stores.schedules.claim_due("boefje", 10, LEASE, ORG)) == [a.id]
    nothing = stores.schedules.claim_due("boefje", 10, LEASE, ORG)
    assert stores.schedules.confirm(nothing, LEASE) == set()
    stores.schedules.release(nothing)


def test_a_schedule_with_an_active_task_or_disabled_is_never_claimed(
    stores: Stores, clock: FakeClock
) -> None:
    busy, off, free = many_due(stores, clock, 3)
    join(stores, busy, "a")
    stores.schedules.set_deadlines({busy.id: busy.deadline_at})  # due again, yet its task is active
    stores.schedules.disable([off.id])
    assert ids(stores.schedules.claim_due("boefje", 10, LEASE)) == [free.id]


def test_concurrent_claimants_never_get_the_same_schedule(stores: Stores, clock: FakeClock) -> None:
    """Four claimants at once, small batches, until none is left: every due schedule claimed exactly once."""
    made = many_due(stores, clock, 120)
    claimed: list[list[uuid.UUID]] = [[] for _ in range(4)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def claimant(mine: list[uuid.UUID]) -> None:
        try:
            start.wait()
            while batch := stores.schedules.claim_due("boefje", 7, LEASE, ORG).schedules:
                mine.extend(s.id for s in batch)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=claimant, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    everything = [key for mine in claimed for key in mine]
    assert len(everything) == len(set(everything)) == len(made)
    assert set(everything) == {s.id for s in made}
