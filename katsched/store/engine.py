"""One engine per database URL. SQLite gets the recipe that makes it a safe multi-process queue.

- WAL: readers never block the writer and the writer never blocks readers.
- busy_timeout: a second process waits for the write lock instead of failing at once.
- BEGIN IMMEDIATE for writes: the write lock is taken at the start of the transaction, so two pops cannot both
  read the same QUEUED rows and then race to upgrade their locks (SQLITE_BUSY deadlock); reads stay deferred.
- pysqlite's own transaction handling is switched off so that SQLAlchemy's BEGIN is the one that is sent.
"""

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from katsched.errors import StorageError

READ_ONLY = "katsched_read_only"
# The driver's own error escapes untranslated from the BEGIN sent straight to it (see _begin).
DATABASE_ERRORS = (SQLAlchemyError, sqlite3.Error)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def build_engine(
    url: str, *, busy_timeout_ms: int = 5000, pool_size: int = 10, sqlite_cache_mib: int = 8
) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms, pool_size, sqlite_cache_mib)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(
        parsed,
        json_serializer=_json_dumps,
        pool_size=pool_size,
        pool_pre_ping=True,
        connect_args={"options": "-c timezone=utc"},
    )


def _sqlite_engine(url: str, busy_timeout_ms: int, pool_size: int, cache_mib: int) -> Engine:
    database = make_url(url).database
    pool: dict[str, Any] = {}
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # At most `pool_size` connections, each with `cache_mib` of page cache: the memory the database takes
        # is bounded by the configuration, not by the queue (every connection fills its cache in time).
        pool = {"pool_size": pool_size, "max_overflow": 0}
    engine = create_engine(
        url,
        json_serializer=_json_dumps,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        **pool,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the last commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # A pop rewrites several index pages; keeping the hot ones cached is what keeps a large queue fast.
        cursor.execute(f"PRAGMA cache_size={-1024 * int(cache_mib)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        # Straight to the driver: this runs before every transaction, so it is worth skipping SQLAlchemy's
        # statement machinery for a constant string.
        connection.connection.driver_connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")  # type: ignore[union-attr]

    return engine


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction; database errors become StorageError."""
    try:
        with engine.begin() as connection:
            yield connection
    except DATABASE_ERRORS as exc:
        raise StorageError(f"database error: {_first_line(exc)}") from exc


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read transaction (deferred on SQLite, so it never waits for the write lock)."""
    try:
        with engine.connect() as plain, plain.execution_options(**{READ_ONLY: True}).begin() as _:
            yield plain
    except DATABASE_ERRORS as exc:
        raise StorageError(f"database error: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    return (str(original).splitlines() or [type(original).__name__])[0]
