"""The store contract suite, job leases: the `JobLeases` port on every implementation (in memory, SQLite,
PostgreSQL). The races run real threads on their own connections: on PostgreSQL and SQLite the database,
not the test, decides who wins."""

import threading
from datetime import datetime, timedelta

from katsched.core.ports import JobLease, JobLeases
from katsched.testing import FakeClock
from tests.stores import Stores

MINUTE = timedelta(minutes=1)
RACERS = 8
ROUNDS = 10


def test_a_free_lease_is_taken_until_now_plus_its_duration(stores: Stores, clock: FakeClock) -> None:
    now = clock.now()
    lease = stores.leases.acquire("once-only", "host-a:1", now, MINUTE)
    assert lease == JobLease("once-only", "host-a:1", now, now + MINUTE)
    assert stores.leases.leases() == [lease]


def test_a_running_lease_of_another_holder_is_refused_and_left_as_it_is(
    stores: Stores, clock: FakeClock
) -> None:
    held = stores.leases.acquire("once-only", "host-a:1", clock.now(), MINUTE)
    clock.advance(seconds=59)
    assert stores.leases.acquire("once-only", "host-b:2", clock.now(), MINUTE) is None
    assert stores.leases.leases() == [held]


def test_the_holder_renews_its_lease_and_keeps_its_acquired_at(stores: Stores, clock: FakeClock) -> None:
    first = clock.now()
    stores.leases.acquire("once-only", "host-a:1", first, MINUTE)
    clock.advance(seconds=20)
    renewed = stores.leases.acquire("once-only", "host-a:1", clock.now(), MINUTE)
    assert renewed == JobLease("once-only", "host-a:1", first, clock.now() + MINUTE)
    # A renewal after its own expiry still keeps the holder's tenure: nobody took it meanwhile.
    clock.advance(minutes=5)
    late = stores.leases.acquire("once-only", "host-a:1", clock.now(), MINUTE)
    assert late is not None and late.acquired_at == first


def test_an_expired_lease_goes_to_the_next_asker_from_its_expiry_on(stores: Stores, clock: FakeClock) -> None:
    held = stores.leases.acquire("once-only", "host-a:1", clock.now(), MINUTE)
    assert held is not None
    just_before = held.expires_at - timedelta(microseconds=1)
    assert stores.leases.acquire("once-only", "host-b:2", just_before, MINUTE) is None
    taken = stores.leases.acquire("once-only", "host-b:2", held.expires_at, MINUTE)
    assert taken == JobLease("once-only", "host-b:2", held.expires_at, held.expires_at + MINUTE)
    assert stores.leases.acquire("once-only", "host-a:1", held.expires_at, MINUTE) is None
    assert stores.leases.leases() == [taken]


def test_only_the_holder_releases_a_lease_and_then_it_is_free(stores: Stores, clock: FakeClock) -> None:
    stores.leases.acquire("once-only", "host-a:1", clock.now(), MINUTE)
    assert stores.leases.release("once-only", "host-b:2") is False
    assert [lease.holder for lease in stores.leases.leases()] == ["host-a:1"]
    assert stores.leases.release("once-only", "host-a:1") is True
    assert stores.leases.release("once-only", "host-a:1") is False
    assert stores.leases.leases() == []
    assert stores.leases.acquire("once-only", "host-b:2", clock.now(), MINUTE) is not None


def test_leases_of_different_names_are_independent(stores: Stores, clock: FakeClock) -> None:
    now = clock.now()
    assert stores.leases.acquire("sweeps", "host-a:1", now, MINUTE) is not None
    assert stores.leases.acquire("enumeration", "host-b:2", now, MINUTE) is not None
    assert [(lease.name, lease.holder) for lease in stores.leases.leases()] == [
        ("enumeration", "host-b:2"),
        ("sweeps", "host-a:1"),
    ]


def race(leases: JobLeases, name: str, now: datetime) -> list[str]:
    """RACERS threads released at once, each asking for `name` as its own holder; the holders that got it."""
    start = threading.Barrier(RACERS)
    winners: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def racer(holder: str) -> None:
        start.wait()
        try:
            won = leases.acquire(name, holder, now, MINUTE)
        except BaseException as error:
            with lock:
                errors.append(error)
            return
        if won is not None:
            with lock:
                winners.append(won.holder)

    threads = [threading.Thread(target=racer, args=(f"host-{n}:{n}",)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    return winners


def test_daemons_racing_for_a_free_lease_leave_exactly_one_holder(stores: Stores, clock: FakeClock) -> None:
    now = clock.now()
    for round_ in range(ROUNDS):
        name = f"lease-{round_}"
        winners = race(stores.leases, name, now)
        assert len(winners) == 1, winners
        assert [lease.holder for lease in stores.leases.leases() if lease.name == name] == winners


def test_daemons_racing_for_an_expired_lease_leave_exactly_one_holder(
    stores: Stores, clock: FakeClock
) -> None:
    for round_ in range(ROUNDS):
        name = f"lease-{round_}"
        stores.leases.acquire(name, "dead:1", clock.now(), MINUTE)
        winners = race(stores.leases, name, clock.now() + 2 * MINUTE)
        assert len(winners) == 1, winners
        assert [lease.holder for lease in stores.leases.leases() if lease.name == name] == winners
