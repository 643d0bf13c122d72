"""The original scheduler's PostgreSQL database, read-only: its revision, its schedules and its tasks.

Every session is opened read-only (`default_transaction_read_only`), so the import cannot change the source
whatever goes wrong. Rows are streamed with a server-side cursor in the order the mapping needs.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from katsched.core.mula_rows import (
    FINISHED,
    SourceSchedule,
    SourceTask,
    split_scheduler_id,
    supported_revision,
)
from katsched.errors import SourceError

_FINISHED = ", ".join(f"'{status}'" for status in FINISHED)


def source_engine(url: str) -> Engine:
    """An engine on `url` that can only read; SourceError for anything but a PostgreSQL URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise SourceError(f"--from {url!r} is not a database URL: {error}") from error
    if parsed.get_backend_name() != "postgresql":
        raise SourceError(f"--from must be a postgresql:// URL (OpenKAT's scheduler database), not {url!r}")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    options = "-c timezone=utc -c default_transaction_read_only=on"
    return create_engine(parsed, connect_args={"options": options})


class MulaSource:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as error:
            raise SourceError(f"cannot read the source database: {_first_line(error)}") from error

    def revision(self) -> str:
        """The source's Alembic revision; SourceError unless it is 0008 to 0011."""
        with self._connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                raise SourceError("the source database has no alembic_version table: not OpenKAT's scheduler")
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        supported_revision(version)
        return str(version)

    def _organisation_column(self, connection: Connection, table: str) -> str:
        """Revisions before 0009 have no `organisation` column: the mapping derives it from `data`."""
        columns = {column["name"] for column in inspect(connection).get_columns(table)}
        return "organisation" if "organisation" in columns else "NULL AS organisation"

    def count(self, table: str, since: datetime | None = None) -> int:
        with self._connect() as connection:
            return int(
                connection.execute(
                    text(f"SELECT count(*) FROM {table} {_since(since)}"), _at(since)
                ).scalar_one()
            )

    def schedules(self, batch: int) -> Iterator[list[SourceSchedule]]:
        with self._connect() as connection:
            organisation = self._organisation_column(connection, "schedules")
            query = text(
                f"SELECT id, scheduler_id, {organisation}, hash, data, enabled, schedule, deadline_at,"
                " created_at, modified_at FROM schedules ORDER BY created_at, id"
            )
            for rows in _stream(connection, query, {}, batch):
                yield [SourceSchedule(**row) for row in rows]

    def tasks(self, batch: int, since: datetime | None = None) -> Iterator[list[SourceTask]]:
        """Tasks oldest first; with `since`, finished tasks only when modified at or after it."""
        with self._connect() as connection:
            organisation = self._organisation_column(connection, "tasks")
            query = text(
                f"SELECT id, scheduler_id, {organisation}, schedule_id, status::text AS status, hash,"
                f" priority, data, created_at, modified_at FROM tasks {_since(since)} ORDER BY created_at, id"
            )
            for rows in _stream(connection, query, _at(since), batch):
                yield [SourceTask(**row) for row in rows]

    def queued_identities(self) -> set[tuple[str, str]]:
        """(scheduler kind, hash) of every QUEUED task."""
        query = text(
            "SELECT DISTINCT scheduler_id, hash FROM tasks WHERE status = 'QUEUED' AND hash IS NOT NULL"
        )
        with self._connect() as connection:
            rows = connection.execute(query).all()
        return {(_kind(scheduler_id), str(found)) for scheduler_id, found in rows if _kind(scheduler_id)}

    def last_runs(self) -> dict[str, datetime]:
        """The newest `modified_at` (its dispatch time, §1.10) of each finished boefje task's hash."""
        query = text(
            "SELECT hash, max(modified_at) FROM tasks WHERE type = 'boefje' AND hash IS NOT NULL"
            " AND status IN ('COMPLETED', 'FAILED') GROUP BY hash"
        )
        with self._connect() as connection:
            return {str(found): at for found, at in connection.execute(query)}

    def last_activity(self) -> datetime | None:
        """When the original last touched a task or schedule: the moment imported priorities are ranked at."""
        query = text(
            "SELECT greatest((SELECT max(modified_at) FROM tasks), (SELECT max(modified_at) FROM schedules))"
        )
        with self._connect() as connection:
            found: datetime | None = connection.execute(query).scalar()
        return found


def _since(since: datetime | None) -> str:
    return "" if since is None else f"WHERE status::text NOT IN ({_FINISHED}) OR modified_at >= :since"


def _at(since: datetime | None) -> dict[str, Any]:
    return {} if since is None else {"since": since}


def _kind(scheduler_id: str) -> str:
    try:
        return split_scheduler_id(scheduler_id)[0].value
    except ValueError:
        return ""


def _stream(
    connection: Connection, query: Any, params: dict[str, Any], batch: int
) -> Iterator[list[dict[str, Any]]]:
    try:
        result = connection.execution_options(stream_results=True, yield_per=batch).execute(query, params)
        for partition in result.mappings().partitions(batch):
            yield [_plain(row) for row in partition]
    except SQLAlchemyError as error:
        raise SourceError(f"cannot read the source database: {_first_line(error)}") from error


def _plain(row: Any) -> dict[str, Any]:
    plain = dict(row)
    for key in ("id", "schedule_id"):
        if isinstance(plain.get(key), str):
            plain[key] = uuid.UUID(plain[key])
    return plain


def _first_line(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).splitlines() or [type(original).__name__])[0]
