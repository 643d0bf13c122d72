"""The store boundary sorts every database error into one of three: transient (`StorageUnavailable`), the
caller's value (`InvalidValue`), or a bug, which is not translated and propagates as the library raised it."""

import logging
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from katsched.errors import InvalidValue, KatschedError, StorageUnavailable
from katsched.store.engine import build_engine, read, write
from tests.contract import api_support
from tests.contract.api_support import MakeApi

api, make_api = api_support.api, api_support.make_api  # the fixtures


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# transient


def test_a_database_locked_past_the_busy_timeout_is_unavailable(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        impatient = build_engine(url_of(engine), busy_timeout_ms=50)
        assert engine.url.database is not None
        holder = sqlite3.connect(engine.url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with (
                pytest.raises(StorageUnavailable, match="database is locked"),
                write(impatient) as connection,
            ):
                connection.execute(text("DELETE FROM schedules"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            impatient.dispose()
        return
    with engine.connect() as holder, holder.begin():
        holder.execute(text("LOCK TABLE schedules IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(StorageUnavailable, match="lock timeout"), write(engine) as connection:
            connection.execute(text("SET LOCAL lock_timeout = '50ms'"))
            connection.execute(text("SELECT count(*) FROM schedules"))


def test_a_database_that_cannot_be_reached_is_unavailable(engine: Engine, tmp_path: Path) -> None:
    if engine.dialect.name == "sqlite":
        (tmp_path / "a-directory").mkdir()
        unreachable = build_engine(f"sqlite:///{tmp_path / 'a-directory'}")
    else:
        unreachable = build_engine("postgresql+psycopg://postgres@127.0.0.1:1/katsched")  # nobody listens
    with pytest.raises(StorageUnavailable), read(unreachable) as connection:
        connection.execute(text("SELECT 1"))
    unreachable.dispose()


@pytest.mark.postgres
def test_a_connection_lost_mid_transaction_is_unavailable(postgres_engine: Engine) -> None:
    with pytest.raises(StorageUnavailable), write(postgres_engine) as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with postgres_engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        connection.execute(text("SELECT 1"))


# the caller's value


def test_a_value_the_constraints_refuse_is_invalid(engine: Engine) -> None:
    with pytest.raises(InvalidValue), write(engine) as connection:  # NOT NULL columns left out
        connection.execute(text("INSERT INTO schedules (id) VALUES (:id)"), {"id": uuid.uuid4().hex})


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("statement", "value"),
    [("SELECT CAST(:value AS text)", "org\x00"), ("SELECT CAST(:value AS integer)", 2**40)],
    ids=["nul-character", "out-of-range"],
)
def test_a_value_postgresql_cannot_hold_is_invalid(
    postgres_engine: Engine, statement: str, value: object
) -> None:
    with pytest.raises(InvalidValue), read(postgres_engine) as connection:
        connection.execute(text(statement), {"value": value})


# a bug


@pytest.mark.parametrize(
    "statement", ["SELEC 1", "SELECT no_such_column FROM tasks", "SELECT 1 FROM no_such_table"]
)
def test_a_broken_statement_is_a_bug_and_propagates_untranslated(engine: Engine, statement: str) -> None:
    with pytest.raises(SQLAlchemyError) as raised, write(engine) as connection:
        connection.execute(text(statement))
    assert not isinstance(raised.value, KatschedError)
    assert raised.traceback  # with the traceback of where it happened


def test_the_api_answers_503_400_and_500_by_the_tree_alone(
    make_api: MakeApi, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(raise_server_exceptions=False)
    failures = {
        "unavailable": StorageUnavailable("database error: database is locked"),
        "invalid": InvalidValue("database error: a value too long"),
    }
    for failure, status in (("unavailable", 503), ("invalid", 400)):

        def fail(_: uuid.UUID, error: Exception = failures[failure]) -> None:
            raise error

        api.queue.get = fail  # type: ignore[method-assign, assignment]
        response = api.client.get(f"/tasks/{uuid.uuid4()}")
        assert response.status_code == status, failure

    def broken_statement(_: uuid.UUID) -> None:
        with read(engine) as connection:
            connection.execute(text("SELECT no_such_column FROM tasks"))

    api.queue.get = broken_statement  # type: ignore[method-assign, assignment]
    with caplog.at_level(logging.ERROR, "katsched.api"):
        response = api.client.get(f"/tasks/{uuid.uuid4()}")
    assert (response.status_code, response.json()) == (500, {"detail": "Internal server error"})
    [record] = [r for r in caplog.records if r.getMessage().startswith("api_unhandled_error")]
    assert record.exc_info is not None and "no_such_column" in str(record.exc_info[1])
