"""The `JobLeases` port in memory (`katsched.testing`): the rules of `katsched.store.leases`' statement,
under one lock, so that threads racing for a lease leave one holder as the database does."""

import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from katsched.core.ports import JobLease


class MemoryJobLeases:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[str, JobLease] = {}

    def acquire(self, name: str, holder: str, now: datetime, duration: timedelta) -> JobLease | None:
        with self._lock:
            current = self._leases.get(name)
            if current is not None and current.holder == holder:
                lease = replace(current, expires_at=now + duration)
            elif current is None or current.expires_at <= now:
                lease = JobLease(name, holder, now, now + duration)
            else:
                return None
            self._leases[name] = lease
            return lease

    def release(self, name: str, holder: str) -> bool:
        with self._lock:
            current = self._leases.get(name)
            if current is None or current.holder != holder:
                return False
            del self._leases[name]
            return True

    def leases(self) -> list[JobLease]:
        with self._lock:
            return [self._leases[name] for name in sorted(self._leases)]


if TYPE_CHECKING:  # mypy proves that the fake implements the port
    from katsched.core.ports import JobLeases

    def _implements_port(store: MemoryJobLeases) -> JobLeases:
        return store
