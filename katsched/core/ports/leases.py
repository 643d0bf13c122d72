"""The port of the jobs that must run on one daemon at a time (sweeps, retention, walks over every
organisation)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True)
class JobLease:
    """Who may run the jobs of `name` until `expires_at` (held since `acquired_at`, renewals included)."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


class JobLeases(Protocol):
    """Leases in the store shared by every daemon: each one held by at most one holder (a daemon's instance
    id) at a time, and free again once it expires. Every call is one atomic statement, so any number of
    daemons racing for a lease leave exactly one holder. `now` comes from the caller's clock."""

    def acquire(self, name: str, holder: str, now: datetime, duration: timedelta) -> JobLease | None:
        """Take the lease, or renew it, until `now + duration`: when it is free, has expired (`expires_at <=
        now`) or is `holder`'s already (a renewal keeps `acquired_at`). The lease as `holder` now holds it,
        or None when another holder's lease is still running."""
        ...

    def release(self, name: str, holder: str) -> bool:
        """Free the lease if `holder` holds it (expired or not); whether it did."""
        ...

    def leases(self) -> list[JobLease]:
        """Every lease row, expired ones included, by name."""
        ...
