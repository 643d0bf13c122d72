"""`LeaseKeeper`: one daemon of several holds a lease at a time; a dead holder's lease is taken over within
twice its duration; a clean stop hands it over at once. Two keepers share one in-memory lease store, as
two daemons share one database (the store's own statement is proven by the contract suite)."""

import logging
from datetime import datetime, timedelta

import pytest

from katsched.core.ports import JobLease
from katsched.errors import StorageUnavailable
from katsched.job_leases import LeaseKeeper
from katsched.testing import FakeClock, MemoryJobLeases
from tests.conftest import START

LEASE = timedelta(seconds=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store() -> MemoryJobLeases:
    return MemoryJobLeases()


def keeper(store: MemoryJobLeases, clock: FakeClock, holder: str) -> LeaseKeeper:
    return LeaseKeeper(store, holder, ["once-only"], LEASE, clock)


class Flaky(MemoryJobLeases):
    """A lease store whose database can be taken away."""

    down = False

    def acquire(self, name: str, holder: str, now: datetime, duration: timedelta) -> JobLease | None:
        if self.down:
            raise StorageUnavailable("database error: connection refused")
        return super().acquire(name, holder, now, duration)


def test_the_first_daemon_takes_the_lease_and_the_second_is_told_who_holds_it(
    store: MemoryJobLeases, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "katsched.leases")
    a, b = keeper(store, clock, "host-a:1"), keeper(store, clock, "host-b:2")
    a.renew()
    b.renew()
    b.renew()
    assert (a.held(), b.held()) == (["once-only"], [])
    assert a.renew_interval == 10.0
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("lease_acquired lease=once-only holder=host-a:1 expires_at=")
    assert messages[1:] == ["lease_held_elsewhere lease=once-only holder=host-a:1"], "said once, not per try"


def test_a_dead_holders_lease_is_taken_over_within_twice_its_duration_and_never_shared(
    store: MemoryJobLeases, clock: FakeClock
) -> None:
    a, b = keeper(store, clock, "host-a:1"), keeper(store, clock, "host-b:2")
    a.renew()
    b.renew()
    clock.advance(seconds=a.renew_interval)
    a.renew()  # its last renewal: then it is killed
    died = clock.now()
    while not b.holds("once-only"):
        assert not a.holds("once-only") or not b.holds("once-only")
        assert clock.now() - died < 2 * LEASE
        clock.advance(seconds=b.renew_interval)
        b.renew()
    assert clock.now() - died <= LEASE + timedelta(seconds=b.renew_interval)
    assert not a.holds("once-only"), "the dead holder's own view runs out with its lease"


def test_a_holder_that_cannot_renew_stops_at_its_expiry_and_learns_it_lost_the_lease(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = Flaky()
    a, b = keeper(store, clock, "host-a:1"), keeper(store, clock, "host-b:2")
    a.renew()
    store.down = True
    clock.advance(seconds=10)
    with pytest.raises(StorageUnavailable):
        a.renew()
    assert a.holds("once-only"), "held until the expiry the last renewal set"
    clock.advance(seconds=20)
    assert not a.holds("once-only")
    store.down = False
    b.renew()
    a.renew()
    assert (a.held(), b.held()) == ([], ["once-only"])
    assert "lease_lost lease=once-only holder=host-b:2" in caplog.text


def test_a_clean_stop_releases_the_lease_for_the_next_daemon_at_once(
    store: MemoryJobLeases, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "katsched.leases")
    a, b = keeper(store, clock, "host-a:1"), keeper(store, clock, "host-b:2")
    a.renew()
    a.release()
    assert a.held() == [] and store.leases() == []
    b.renew()
    assert b.held() == ["once-only"]
    assert "lease_released lease=once-only holder=host-a:1" in caplog.text
    a.release()  # holds nothing: nothing to do, nothing said
    assert caplog.text.count("lease_released") == 1


def test_a_lease_lasts_a_positive_duration(store: MemoryJobLeases, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="positive"):
        LeaseKeeper(store, "host-a:1", ["once-only"], timedelta(0), clock)
