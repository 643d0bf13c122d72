"""`store.prepared`: the hot statements run on the driver's cursor read and write exactly what
`Connection.execute` reads and writes, and fail as it fails, on both databases."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from katsched.core.models import PushPolicy
from katsched.errors import InvalidValue
from katsched.store.engine import write
from katsched.store.prepared import fetch, fetch_batch
from katsched.store.tables import schedules, tasks
from katsched.store.task_upsert import task_upsert

NOW = datetime(2026, 12, 4, 12, 30, 15, 123456, tzinfo=UTC)


def task_row(name: str, **changes: Any) -> dict[str, Any]:
    row = {
        "id": uuid.uuid4(),
        "scheduler_id": "boefje",
        "schedule_id": None,
        "organisation": "org1",
        "priority": 3,
        "status": "queued",
        "type": "boefje",
        "hash": f"hash-{name}",
        "data": {"input_ooi": f"Hostname|internet|{name}", "nested": {"list": [1, 2.5, None, "é"]}},
        "created_at": NOW,
        "modified_at": NOW,
    }
    return {**row, **changes}


def test_an_insert_returns_what_sqlalchemy_returns(engine: Engine) -> None:
    statement = insert(tasks).returning(*tasks.c)
    with write(engine) as connection:
        (ours,) = fetch(connection, statement, task_row("a"))
        (theirs,) = [dict(row._mapping) for row in connection.execute(statement, task_row("b"))]
    assert ours.keys() == theirs.keys() == {column.name for column in tasks.c}
    for name in ours:
        if name not in ("id", "hash", "data"):
            assert ours[name] == theirs[name], name
            assert type(ours[name]) is type(theirs[name]), name
    assert isinstance(ours["id"], uuid.UUID) and ours["created_at"] == NOW and ours["created_at"].tzinfo
    assert ours["data"] == task_row("a")["data"]


def test_a_select_reads_back_what_it_wrote_and_expands_an_in(engine: Engine) -> None:
    rows = [task_row(name, created_at=NOW + timedelta(seconds=i)) for i, name in enumerate("abc")]
    by_hashes = (
        select(tasks.c.id, tasks.c.hash, tasks.c.data, tasks.c.created_at)
        .where(tasks.c.hash.in_(bindparam("hashes", expanding=True)), tasks.c.priority == bindparam("p"))
        .order_by(tasks.c.created_at)
    )
    with write(engine) as connection:
        fetch_batch(connection, insert(tasks).returning(tasks.c.id), rows)
        two = fetch(connection, by_hashes, {"hashes": ["hash-a", "hash-c"], "p": 3})
        three = fetch(connection, by_hashes, {"hashes": ["hash-a", "hash-b", "hash-c"], "p": 3})
        none = fetch(connection, by_hashes, {"hashes": ["hash-a"], "p": 4})
    assert [row["hash"] for row in two] == ["hash-a", "hash-c"]
    assert [row["id"] for row in three] == [row["id"] for row in rows]
    assert three[2]["created_at"] == NOW + timedelta(seconds=2)
    assert three[0]["data"] == rows[0]["data"]
    assert none == []


def test_a_batch_returns_a_row_for_each_set_of_parameters(engine: Engine) -> None:
    statement = task_upsert(engine.dialect.name, PushPolicy())
    with write(engine) as connection:
        one = fetch_batch(connection, statement, [task_row("a")])
        many = fetch_batch(connection, statement, [task_row("b"), task_row("c")])
        refused = fetch_batch(connection, statement, [task_row("a", id=uuid.uuid4())])  # a queued twin
    assert [row["hash"] for row in one] == ["hash-a"]
    assert sorted(row["hash"] for row in many) == ["hash-b", "hash-c"]
    assert refused == []  # DO NOTHING: no row for the draft that met its twin


def schedule_row(name: str, **changes: Any) -> dict[str, Any]:
    row = {"id": uuid.uuid4(), "scheduler_id": "boefje", "organisation": "org1", "hash": f"hash-{name}"}
    return {**row, "data": {}, "created_at": NOW, "modified_at": NOW, **changes}


def test_a_statement_given_other_columns_is_compiled_for_them(engine: Engine) -> None:
    statement = insert(schedules).returning(schedules.c.id, schedules.c.schedule, schedules.c.deadline_at)
    with write(engine) as connection:
        (plain,) = fetch(connection, statement, schedule_row("a", enabled=True))
        row = schedule_row("b", enabled=True, schedule="0 * * * *", deadline_at=NOW)
        (full,) = fetch(connection, statement, row)
    assert (plain["schedule"], plain["deadline_at"]) == (None, None)
    assert (full["schedule"], full["deadline_at"]) == ("0 * * * *", NOW)


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it_and_translated_once(engine: Engine) -> None:
    row = task_row("a")
    raised: list[Exception] = []
    with pytest.raises(InvalidValue, match="database error"), write(engine) as connection:
        fetch(connection, insert(tasks), row)
        try:
            fetch(connection, insert(tasks), {**row, "hash": "other"})  # the same primary key
        except Exception as exc:
            raised.append(exc)
            raise  # leaves the write, which translates it
    assert [type(exc) for exc in raised] == [IntegrityError]  # as Connection.execute raises it


def test_a_column_default_is_written_where_no_value_is_given(engine: Engine) -> None:
    statement = insert(schedules).returning(schedules.c.enabled)
    with write(engine) as connection:
        (given,) = fetch(connection, statement, schedule_row("a", enabled=False))
        (default,) = fetch(connection, statement, schedule_row("b"))
    assert (given["enabled"], default["enabled"]) == (False, True)
