import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, text

from katsched.store.engine import build_engine
from katsched.store.migrate import upgrade
from katsched.testing import FakeClock

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@contextmanager
def scratch_postgres(prefix: str = "katsched_test") -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test run, dropped afterwards. PostgreSQL must be running: no silent skip."""
    with scratch_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = build_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def empty_postgres(engine: Engine) -> Engine:
    with engine.begin() as connection:
        tables = "task_events, tasks, schedules, plugins_seen, daemon_state, decisions, task_counts"
        connection.execute(text(f"TRUNCATE {tables}, task_hour_counts, job_leases CASCADE"))
    return engine


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def migrated_engine(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated, empty database of `kind`: a real SQLite file, or the run's PostgreSQL database emptied."""
    if kind == "postgres":
        yield empty_postgres(request.getfixturevalue("postgres_engine"))
        return
    path = tmp_path_factory.mktemp("db") / "katsched.db"
    sqlite = build_engine(f"sqlite:///{path}")
    upgrade(sqlite)
    yield sqlite
    sqlite.dispose()


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated, empty database: a real SQLite file, and PostgreSQL."""
    with migrated_engine(request.param, request, tmp_path_factory) as database:
        yield database
