"""One engine per database URL. SQLite gets the recipe that makes it a safe multi-process queue.

- WAL: readers never block the writer and the writer never blocks readers.
- busy_timeout: a second process waits for the write lock instead of failing at once.
- BEGIN IMMEDIATE for writes: the write lock is taken at the start of the transaction, so two pops cannot both
  read the same QUEUED rows and then race to upgrade their locks (SQLITE_BUSY deadlock); reads stay deferred.
- pysqlite's own transaction handling is switched off so that SQLAlchemy's BEGIN is the one that is sent.

A write may be asked not to wait (`write(engine, wait=False)`): it raises `WouldWait` at once when another
thread of the process is writing or, on SQLite, another connection holds the write lock (PostgreSQL has no
single write lock to wait for), so that a caller on an event loop can hand it to a thread instead of blocking
the loop for up to the busy timeout. On a SQLite file those writes share one connection of their own, opened
at the first and kept (they take turns, so one at a time uses it): taking a pooled connection and giving it
back cost a tenth of a pop. Elsewhere they take a pooled connection, and WouldWait when none is free.

A read-only engine (`read_only=True`, for the commands that only look) never creates, migrates or writes: the
SQLite file is opened with `mode=ro` (or `immutable=1` when nobody can be writing it: no -wal file beside it
and its directory not writable for us), PostgreSQL sessions are `default_transaction_read_only`.
"""

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.pool import QueuePool, StaticPool

from katsched.errors import InvalidValue, StorageError, StorageUnavailable, WouldWait
from katsched.store.turns import TurnLock


@dataclass
class _SqliteWrites:
    """The writers of one process at a SQLite file. They take turns here (`turn`), first come first served,
    before BEGIN IMMEDIATE. Not for correctness (the write lock is SQLite's, across processes too), but a
    thread that finds the write lock taken waits in SQLite's busy handler, which sleeps in steps of up to
    100 ms however soon the lock is free. Two threads pushing batches of 150: the slowest push 96-130 ms with
    turns, 158-556 without (the same throughput); and an API pop no longer sleeps behind an intake batch.
    `kept`: the connection of the writes that may not wait, used only by the holder of the turn."""

    turn: TurnLock
    open_kept: Callable[[], Connection] | None  # None: no connection is kept (an in-memory database)
    kept: Connection | None = None


_sqlite_writes: "WeakKeyDictionary[Engine, _SqliteWrites]" = WeakKeyDictionary()
_turns_held = threading.local()  # `engines`: those whose turn this thread holds

READ_ONLY = "katsched_read_only"
NO_WAIT = "katsched_no_wait"
SQLITE_BUSY = 5
# The driver's own error escapes untranslated from the BEGIN sent straight to it (see _begin).
DATABASE_ERRORS = (SQLAlchemyError, sqlite3.Error)


# One encoder for every JSON column: `json.dumps` with options builds a new encoder per call (a third of it).
_JSON = json.JSONEncoder(default=str, separators=(",", ":"))


def _json_dumps(value: Any) -> str:
    return _JSON.encode(value)


def build_engine(
    url: str,
    *,
    busy_timeout_ms: int = 5000,
    pool_size: int = 10,
    sqlite_cache_mib: int = 8,
    read_only: bool = False,
    wal_autocheckpoint_pages: int | None = None,
) -> Engine:
    """The engine for `url`; a driver that is not installed is a StorageError naming the missing extra.
    `wal_autocheckpoint_pages`: SQLite's automatic checkpoint threshold when not its default (1,000 pages),
    for a process that checkpoints on a thread of its own (`katsched.store.wal`)."""
    parsed = make_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(
                url, busy_timeout_ms, pool_size, sqlite_cache_mib, read_only, wal_autocheckpoint_pages
            )
        if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = "-c timezone=utc" + (" -c default_transaction_read_only=on" if read_only else "")
        return create_engine(
            parsed,
            json_serializer=_json_dumps,
            pool_size=pool_size,
            pool_pre_ping=True,
            connect_args={"options": options},
        )
    except ImportError as exc:
        raise StorageError(
            f"{parsed.drivername} URLs need the {exc.name or 'database'} driver, which is not installed: "
            "install katsched with the postgres extra ('katsched[postgres]')"
        ) from None


def sqlite_file(url: str) -> Path | None:
    """The absolute path of the SQLite file behind `url`; None for PostgreSQL and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().absolute()


def _read_only_url(file: Path) -> str:
    # Nobody writes a WAL database without its -wal file: when there is none and we could not create the
    # -shm SQLite needs, the file is read as immutable (no locks, no -shm) instead of refused.
    unwritten = not Path(f"{file}-wal").exists() and not os.access(file.parent, os.W_OK)
    mode = "immutable=1" if unwritten else "mode=ro"
    return f"sqlite:///file:{quote(str(file))}?{mode}&uri=true"


def _sqlite_engine(
    url: str,
    busy_timeout_ms: int,
    pool_size: int,
    cache_mib: int,
    read_only: bool,
    autocheckpoint: int | None,
) -> Engine:
    file = sqlite_file(url)
    pool: dict[str, Any] = {}
    if file is not None:
        if read_only:
            url = _read_only_url(file)
        else:
            file.parent.mkdir(parents=True, exist_ok=True)
        # At most `pool_size` connections (and the one kept for the writes that may not wait), each with
        # `cache_mib` of page cache: the memory the database takes is bounded by the configuration, not by the
        # queue (every connection fills its cache in time).
        pool = {"pool_size": pool_size, "max_overflow": 0}

    def configured(**pool: Any) -> Engine:
        engine = create_engine(
            url,
            json_serializer=_json_dumps,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            **pool,
        )
        _configure_sqlite(engine, busy_timeout_ms, cache_mib, read_only, autocheckpoint)
        return engine

    engine = configured(**pool)
    if not read_only:
        keeps = file is not None
        _sqlite_writes[engine] = _SqliteWrites(
            TurnLock(), _kept_opener(engine, configured) if keeps else None
        )
    return engine


def _kept_opener(engine: Engine, configured: Callable[..., Engine]) -> Callable[[], Connection]:
    """Opens the connection kept for `engine`'s writes that may not wait: the one connection of an engine of
    its own (with the same settings), made at the first such write (most processes never make one) and
    disposed of with `engine`."""
    singles: list[Engine] = []

    def open_kept() -> Connection:
        if not singles:
            singles.append(configured(poolclass=StaticPool))
        return singles[0].connect().execution_options(**{NO_WAIT: True})

    @event.listens_for(engine, "engine_disposed")
    def _dispose_kept(_engine: Engine) -> None:
        writes = _sqlite_writes.get(engine)
        if writes is not None and writes.kept is not None:
            writes.kept.close()
            writes.kept = None
        for single in singles:
            single.dispose()

    return open_kept


def _configure_sqlite(
    engine: Engine, busy_timeout_ms: int, cache_mib: int, read_only: bool, autocheckpoint: int | None
) -> None:
    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The journal mode is the database's, set by its writers; a reader cannot change it.
        cursor.execute("PRAGMA query_only=ON" if read_only else "PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the last commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # A pop rewrites several index pages; keeping the hot ones cached is what keeps a large queue fast.
        cursor.execute(f"PRAGMA cache_size={-1024 * int(cache_mib)}")
        if autocheckpoint is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        # Straight to the driver: this runs before every transaction, so it is worth skipping SQLAlchemy's
        # statement machinery for a constant string.
        driver: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]
        if read_only or options.get(READ_ONLY, False):
            driver.execute("BEGIN")
        elif options.get(NO_WAIT, False):
            _begin_at_once(driver, busy_timeout_ms)
        else:
            driver.execute("BEGIN IMMEDIATE")


def _begin_at_once(driver: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """BEGIN IMMEDIATE without waiting for the write lock: WouldWait when another connection has it."""
    driver.execute("PRAGMA busy_timeout=0")
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != SQLITE_BUSY:
            raise
        raise WouldWait("database error: the write lock is held by another connection") from None
    finally:  # once the lock is held, nothing in the transaction waits for it again
        driver.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


@contextmanager
def write(engine: Engine, *, wait: bool = True) -> Iterator[Connection]:
    """A write transaction; database errors are translated by `translated`. `wait=False`: WouldWait at once
    rather than waiting for a connection or another writer's lock (see the module's docstring)."""
    writes = _sqlite_writes.get(engine)
    if writes is None:
        with _transaction(engine, wait) as connection:
            yield connection
        return
    if engine in _turns_held.__dict__.setdefault("engines", set()):
        # It would wait for its own turn for ever (without turns: for the busy timeout, then fail).
        raise RuntimeError("a write transaction was opened inside another one of the same thread")
    if wait:
        writes.turn.acquire()
    elif not writes.turn.acquire_now():
        raise WouldWait("database error: another thread of this process is writing")
    _turns_held.engines.add(engine)
    try:
        transaction = _transaction(engine, wait) if wait else _kept_transaction(engine, writes)
        with transaction as connection:
            yield connection
    finally:
        _turns_held.engines.discard(engine)
        writes.turn.release()


@contextmanager
def _kept_transaction(engine: Engine, writes: _SqliteWrites) -> Iterator[Connection]:
    """A write that may not wait, on the connection kept for those (opened at the first); the caller holds
    the turn. A connection SQLAlchemy invalidated (lost) is closed, and the next write opens another."""
    if writes.open_kept is None:
        with _transaction(engine, wait=False) as connection:
            yield connection
        return
    try:
        if writes.kept is None:
            writes.kept = writes.open_kept()
        connection = writes.kept
        with connection.begin():
            yield connection
    except DATABASE_ERRORS as exc:
        _drop_if_lost(writes)
        raise translated(exc) from exc


def _drop_if_lost(writes: _SqliteWrites) -> None:
    if writes.kept is not None and writes.kept.invalidated:
        writes.kept.close()
        writes.kept = None


@contextmanager
def _transaction(engine: Engine, wait: bool) -> Iterator[Connection]:
    if not wait and not _connection_free(engine):
        raise WouldWait("database error: every pooled connection is in use")
    try:
        if wait:
            with engine.begin() as connection:
                yield connection
        else:
            with engine.connect() as plain, plain.execution_options(**{NO_WAIT: True}).begin() as _:
                yield plain
    except DATABASE_ERRORS as exc:
        raise translated(exc) from exc


def _connection_free(engine: Engine) -> bool:
    """Whether a connection can be had without waiting: an idle one, or room for a new one. (Another thread
    may take it first; connections are held for milliseconds, so that wait is short.)"""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return True  # in-memory SQLite: one connection per thread
    return pool.checkedin() > 0 or pool.checkedout() < pool.size()


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read transaction (deferred on SQLite, so it never waits for the write lock)."""
    try:
        with engine.connect() as plain, plain.execution_options(**{READ_ONLY: True}).begin() as _:
            yield plain
    except DATABASE_ERRORS as exc:
        raise translated(exc) from exc


def translated(exc: Exception) -> Exception:
    """The database error in our tree: `StorageUnavailable` (transient), `InvalidValue` (the caller's),
    or, for a bug (a statement that does not compile, a missing table or column, misuse of the library),
    the exception itself, so that it propagates unchanged with its traceback."""
    message = f"database error: {first_line(exc)}"
    if isinstance(exc, SQLAlchemyTimeout | DisconnectionError):  # no pooled connection free, or lost
        return StorageUnavailable(message)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StorageUnavailable(message)
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(original, sqlite3.Error):
        kind = _SQLITE.get(original.sqlite_errorcode & 0xFF)
    else:
        kind = _postgres_kind(getattr(original, "sqlstate", None), exc)
    return kind(message) if kind is not None else exc


# SQLite's primary result codes. SQLITE_ERROR (1: syntax, no such table or column) and SQLITE_RANGE/MISUSE
# are bugs and stay untranslated.
_SQLITE: dict[int, type[StorageError]] = {
    5: StorageUnavailable,  # BUSY: locked past the busy timeout
    6: StorageUnavailable,  # LOCKED
    7: StorageUnavailable,  # NOMEM
    8: StorageUnavailable,  # READONLY: the file or its directory is not writable (any more)
    9: StorageUnavailable,  # INTERRUPT
    10: StorageUnavailable,  # IOERR
    11: StorageUnavailable,  # CORRUPT: unusable until an operator restores it; no retry makes it a bug
    13: StorageUnavailable,  # FULL: the disk
    14: StorageUnavailable,  # CANTOPEN
    15: StorageUnavailable,  # PROTOCOL: a lock race between processes
    26: StorageUnavailable,  # NOTADB
    18: InvalidValue,  # TOOBIG: a string or blob over the limit
    19: InvalidValue,  # CONSTRAINT: NOT NULL, CHECK, UNIQUE, FOREIGN KEY
    20: InvalidValue,  # MISMATCH: a datatype mismatch
}

# PostgreSQL SQLSTATE classes (first two characters) and single states.
_POSTGRES_CLASSES: dict[str, type[StorageError]] = {
    "08": StorageUnavailable,  # connection exception
    "28": StorageUnavailable,  # invalid authorization: the operator's to fix, not ours
    "53": StorageUnavailable,  # insufficient resources (disk full, too many connections)
    "58": StorageUnavailable,  # system error (I/O)
    "22": InvalidValue,  # data exception: out of range, NUL character, invalid text representation
    "23": InvalidValue,  # integrity constraint violation
}
_POSTGRES_STATES: dict[str, type[StorageError]] = {
    "40001": StorageUnavailable,  # serialization failure
    "40P01": StorageUnavailable,  # deadlock detected
    "55P03": StorageUnavailable,  # lock not available (lock_timeout)
    "57014": StorageUnavailable,  # query cancelled (statement_timeout)
    "57P01": StorageUnavailable,  # admin shutdown
    "57P02": StorageUnavailable,  # crash shutdown
    "57P03": StorageUnavailable,  # cannot connect now (starting up)
    "3D000": StorageUnavailable,  # the database does not exist (yet)
    "42501": StorageUnavailable,  # insufficient privilege: a grant for the operator to fix
}


def _postgres_kind(sqlstate: str | None, exc: Exception) -> type[StorageError] | None:
    if sqlstate is None:  # the driver's own verdict, before or without a server's answer
        if isinstance(exc, OperationalError):  # refused, unreachable, closed
            return StorageUnavailable
        return InvalidValue if isinstance(exc, DataError) else None  # e.g. a NUL psycopg cannot send
    return _POSTGRES_STATES.get(sqlstate) or _POSTGRES_CLASSES.get(sqlstate[:2])


def first_line(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    return (str(original).splitlines() or [type(original).__name__])[0]
