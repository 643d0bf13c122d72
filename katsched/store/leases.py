"""`SqlJobLeases`, the `JobLeases` port: who runs the once-only jobs, held in one row per lease.

Taking and renewing is one `INSERT … ON CONFLICT (name) DO UPDATE … WHERE` statement that both dialects
spell alike: the row is inserted when the lease is free, and overwritten only when it is the caller's own or
has expired; `RETURNING` then answers whether the caller holds it. PostgreSQL locks the conflicting row for
the update and re-checks the condition against the newest version, and SQLite runs the statement under its
single writer (`BEGIN IMMEDIATE`), so of any number of daemons racing for a free or expired lease exactly
one gets a row back. No read-then-write, no process-local lock.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from katsched.core.ports import JobLease
from katsched.store.engine import read, write
from katsched.store.tables import job_leases


class SqlJobLeases:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def acquire(self, name: str, holder: str, now: datetime, duration: timedelta) -> JobLease | None:
        expires_at = now + duration
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(job_leases).values(
            name=name, holder=holder, acquired_at=now, expires_at=expires_at
        )
        renewal = job_leases.c.holder == insert.excluded.holder
        statement = insert.on_conflict_do_update(
            index_elements=[job_leases.c.name],
            set_={
                "holder": insert.excluded.holder,
                "acquired_at": case((renewal, job_leases.c.acquired_at), else_=insert.excluded.acquired_at),
                "expires_at": insert.excluded.expires_at,
            },
            where=renewal | (job_leases.c.expires_at <= now),
        ).returning(*job_leases.c)
        with write(self.engine) as connection:
            row = connection.execute(statement).one_or_none()
        return JobLease(**row._mapping) if row is not None else None

    def release(self, name: str, holder: str) -> bool:
        statement = delete(job_leases).where(job_leases.c.name == name, job_leases.c.holder == holder)
        with write(self.engine) as connection:
            return bool(connection.execute(statement).rowcount)

    def leases(self) -> list[JobLease]:
        statement = select(job_leases).order_by(job_leases.c.name)
        with read(self.engine) as connection:
            return [JobLease(**row._mapping) for row in connection.execute(statement)]


if TYPE_CHECKING:  # mypy proves that the adapter implements the port
    from katsched.core.ports import JobLeases

    def _implements_port(store: SqlJobLeases) -> JobLeases:
        return store
