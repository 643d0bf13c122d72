"""This daemon's hold on the job leases: which of the jobs that must run once (across every daemon on one
database) may run here now.

A `LeaseKeeper` takes its leases and renews them every `1 / RENEWALS_PER_LEASE` of their duration, from a
recurring job of its own. Asking whether a lease is held (`holds`) reads no database: it compares the expiry
the last renewal returned with the clock, so the daemons that do not hold a lease skip its jobs for the
price of a comparison. When the holder dies its lease expires at most one duration after its last renewal,
and another daemon's next renewal, a third of a duration later at most, takes it over: within twice the lease.
"""

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from katsched.clock import Clock
from katsched.core.ports import JobLease, JobLeases
from katsched.errors import KatschedError

log = logging.getLogger("katsched.leases")

RENEWALS_PER_LEASE = 3


class LeaseKeeper:
    def __init__(
        self, leases: JobLeases, holder: str, names: Sequence[str], duration: timedelta, clock: Clock
    ) -> None:
        if duration <= timedelta(0):
            raise ValueError("a lease lasts a positive duration")
        self._leases = leases
        self.holder = holder
        self.names = tuple(names)
        self.duration = duration
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, datetime] = {}
        self._elsewhere: dict[str, str | None] = {}  # who held each lease we failed to take, when we asked

    @property
    def renew_interval(self) -> float:
        """Seconds between renewals."""
        return self.duration.total_seconds() / RENEWALS_PER_LEASE

    def renew(self) -> None:
        """Take or renew every lease; a storage error propagates (the held expiries stay as they were)."""
        for name in self.names:
            self._note(name, self._leases.acquire(name, self.holder, self._clock.now(), self.duration))

    def holds(self, name: str) -> bool:
        with self._lock:
            until = self._until.get(name)
        return until is not None and self._clock.now() < until

    def held(self) -> list[str]:
        """The names of the leases held now."""
        return [name for name in self.names if self.holds(name)]

    def release(self) -> None:
        """Give up every lease held (a clean stop), so another daemon need not wait for the expiry."""
        with self._lock:
            names, self._until = list(self._until), {}
        for name in names:
            try:
                released = self._leases.release(name, self.holder)
            except KatschedError as error:  # it runs out by itself
                log.warning("lease_release_failed lease=%s error=%s", name, error)
                continue
            if released:
                log.info("lease_released lease=%s holder=%s", name, self.holder)

    def _note(self, name: str, lease: JobLease | None) -> None:
        with self._lock:
            had = name in self._until  # the last renewal got it (even if it has run out since)
            if lease is not None:
                self._until[name] = lease.expires_at
                self._elsewhere.pop(name, None)
            else:
                self._until.pop(name, None)
        if lease is not None:
            if not had:
                log.info(
                    "lease_acquired lease=%s holder=%s expires_at=%s", name, self.holder, lease.expires_at
                )
            return
        if had or name not in self._elsewhere:  # a change to report: read who holds it instead
            holder = next((row.holder for row in self._leases.leases() if row.name == name), None)
            event = "lease_lost" if had else "lease_held_elsewhere"
            log.log(logging.WARNING if had else logging.INFO, "%s lease=%s holder=%s", event, name, holder)
            self._elsewhere[name] = holder
