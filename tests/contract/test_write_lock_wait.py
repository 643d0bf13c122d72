"""Writes that do not wait for SQLite's write lock, and the API's push and pop that use them on its loop.

`write(engine, wait=False)` raises `WouldWait` at once when another connection holds the write lock, and
leaves the connection's busy timeout as it was. The API tries a push or a pop that way on its event loop;
when the lock is taken (or, for a push, the Katalogus must be asked) it waits on a thread, so the event loop
goes on answering, and the push or pop still succeeds."""

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from katsched.api import create_app
from katsched.core.models import Organisation
from katsched.core.ports import TaskDraft
from katsched.errors import WouldWait
from katsched.schedulers.manual import ManualPushes
from katsched.store.engine import build_engine, write
from katsched.store.migrate import upgrade
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.testing import FakeClock
from tests.contract import api_support
from tests.contract.api_support import boefje_data
from tests.contract.kat_fake_server import KATALOGUS, KatFakeServer, connect
from tests.contract.test_kat_ports import boefje

make_api = api_support.make_api  # the fixture

BUSY_TIMEOUT_MS = 20_000  # a write that waited for the lock would fail with StorageUnavailable, not this


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "katsched.db"
    engine = build_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    yield path


@pytest.fixture
def other_connection(sqlite_file: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the database, to hold its write lock (`BEGIN IMMEDIATE`)."""
    other = sqlite3.connect(sqlite_file, isolation_level=None, check_same_thread=False)
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def _engine(path: Path) -> Engine:
    """An engine that has connected once (SQLAlchemy's first connection runs statements of its own)."""
    engine = build_engine(f"sqlite:///{path}", busy_timeout_ms=BUSY_TIMEOUT_MS, pool_size=1)
    engine.connect().close()
    return engine


def _draft() -> TaskDraft:
    return TaskDraft("boefje", "org1", 5, boefje_data())


def test_a_write_that_may_not_wait_is_refused_at_once_while_another_connection_holds_the_lock(
    sqlite_file: Path, other_connection: sqlite3.Connection
) -> None:
    engine = _engine(sqlite_file)
    other_connection.execute("BEGIN IMMEDIATE")
    with pytest.raises(WouldWait), write(engine, wait=False) as connection:
        connection.execute(text("DELETE FROM tasks"))
    other_connection.execute("ROLLBACK")
    with write(engine, wait=False) as connection:  # the same connection: its busy timeout is back
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS


def test_the_writes_that_may_not_wait_keep_one_connection_of_their_own(sqlite_file: Path) -> None:
    """On a SQLite file they go ahead while every pooled connection is in use, all on one connection that
    stays open between them, and is closed with the engine."""
    engine = _engine(sqlite_file)  # one pooled connection
    drivers = []
    with engine.connect():  # checked out: the pool has none left
        for _ in range(3):
            with write(engine, wait=False) as connection:
                connection.execute(text("DELETE FROM tasks"))
                drivers.append(connection.connection.driver_connection)
    assert len({id(driver) for driver in drivers}) == 1
    engine.dispose()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        drivers[0].execute("SELECT 1")  # type: ignore[union-attr]


def test_a_write_that_may_not_wait_is_refused_while_every_pooled_connection_is_in_use(
    postgres_engine: Engine,
) -> None:
    """Where no connection is kept (PostgreSQL), it takes a pooled one, and refuses when none is free."""
    engine = build_engine(postgres_engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with engine.connect() as busy, pytest.raises(WouldWait, match="every pooled connection is in use"):
            busy.exec_driver_sql("SELECT 1")
            with write(engine, wait=False):
                pass
        with write(engine, wait=False) as connection:  # free again
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()


def test_a_pop_that_may_not_wait_leaves_the_task_queued_when_the_lock_is_taken(
    sqlite_file: Path, other_connection: sqlite3.Connection
) -> None:
    queue = SqlTaskQueue(_engine(sqlite_file), FakeClock())
    task = queue.push(_draft())
    other_connection.execute("BEGIN IMMEDIATE")
    with pytest.raises(WouldWait):
        queue.pop_rendered("boefje", wait=False)
    other_connection.execute("ROLLBACK")
    assert queue.get(task.id).status.value == "queued"
    ((popped, _),) = queue.pop_rendered("boefje", wait=False)  # the lock is free: no waiting needed
    assert popped.id == task.id


def test_a_write_that_may_not_wait_goes_ahead_on_either_database(engine: Engine) -> None:
    queue = SqlTaskQueue(engine, FakeClock())
    task = queue.push(_draft(), wait=False)
    ((popped, rendered),) = queue.pop_rendered("boefje", wait=False)
    assert popped.id == task.id and str(task.id).encode() in rendered


def _answered_once_the_lock_is_free(
    queue: SqlTaskQueue, other_connection: sqlite3.Connection, action: str, item: Any
) -> httpx.Response:
    """The answer to a push or pop sent while another connection holds the write lock: the API answers
    /health meanwhile (its event loop is not waiting), and the request only once the lock is given back."""
    clock = queue.clock
    other_connection.execute("BEGIN IMMEDIATE")
    answers: list[httpx.Response] = []
    with TestClient(create_app(queue, SqlScheduleStore(queue.engine, clock), clock)) as client:
        sender = threading.Thread(
            target=lambda: answers.append(client.post(f"/schedulers/boefje/{action}", json=item))
        )
        sender.start()
        assert client.get("/health").status_code == 200
        assert sender.is_alive()  # it cannot finish while the lock is held
        other_connection.execute("COMMIT")
        sender.join()
    (answer,) = answers
    return answer


def test_a_pop_waits_for_the_lock_on_a_thread_while_the_api_goes_on_answering(
    sqlite_file: Path, other_connection: sqlite3.Connection
) -> None:
    engine = build_engine(f"sqlite:///{sqlite_file}", busy_timeout_ms=BUSY_TIMEOUT_MS)  # the default pool
    queue = SqlTaskQueue(engine, FakeClock())
    task = queue.push(_draft())
    answer = _answered_once_the_lock_is_free(queue, other_connection, "pop", None)
    assert answer.status_code == 200
    assert [result["id"] for result in answer.json()["results"]] == [str(task.id)]


@pytest.mark.parametrize(("limit", "tried_inline"), [(1, True), (10, True), (11, False), (1000, False)])
def test_only_a_pop_of_a_few_tasks_is_tried_on_the_event_loop(
    sqlite_file: Path, monkeypatch: pytest.MonkeyPatch, limit: int, tried_inline: bool
) -> None:
    clock = FakeClock()
    queue = SqlTaskQueue(_engine(sqlite_file), clock)
    task = queue.push(_draft())
    asked: list[bool] = []
    pop_rendered = queue.pop_rendered

    def recorded(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["wait"])
        return pop_rendered(*args, **kwargs)

    monkeypatch.setattr(queue, "pop_rendered", recorded)
    with TestClient(create_app(queue, SqlScheduleStore(queue.engine, clock), clock)) as client:
        answer = client.post(f"/schedulers/boefje/pop?limit={limit}")
    assert [result["id"] for result in answer.json()["results"]] == [str(task.id)]
    assert asked == [not tried_inline]  # tried on the loop: asked not to wait (and it did not have to)


def test_the_writers_of_a_process_take_turns_at_a_sqlite_file(sqlite_file: Path) -> None:
    """A second writer of the process waits for the turn (not in SQLite's busy handler); one that may not
    wait is refused while another thread writes, and goes ahead once it is done."""
    engine = build_engine(f"sqlite:///{sqlite_file}", busy_timeout_ms=BUSY_TIMEOUT_MS)
    inside, leave = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with write(engine) as connection:
            connection.execute(text("DELETE FROM tasks"))
            inside.set()
            leave.wait(10)
            order.append("first")

    def second() -> None:
        with write(engine):
            order.append("second")

    holder = threading.Thread(target=first)
    holder.start()
    assert inside.wait(10)
    with (
        pytest.raises(WouldWait, match="another thread of this process is writing"),
        write(engine, wait=False),
    ):
        pass
    waiter = threading.Thread(target=second)
    waiter.start()
    leave.set()
    holder.join(10)
    waiter.join(10)
    assert order == ["first", "second"]
    with write(engine, wait=False) as connection:  # the turn is free again
        connection.execute(text("DELETE FROM tasks"))
    engine.dispose()


def test_a_write_inside_a_write_of_the_same_thread_fails_at_once(sqlite_file: Path) -> None:
    engine = build_engine(f"sqlite:///{sqlite_file}", busy_timeout_ms=BUSY_TIMEOUT_MS)
    nested = pytest.raises(RuntimeError, match="inside another one of the same thread")
    with write(engine), nested, write(engine):
        pass
    with write(engine) as connection:  # the turn was given back
        connection.execute(text("DELETE FROM tasks"))
    engine.dispose()


def _recording_pushes(queue: SqlTaskQueue, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The `wait` of every push the queue is asked for, in order."""
    asked: list[bool] = []
    push = queue.push

    def recorded(draft: TaskDraft, *, wait: bool = True) -> Any:
        asked.append(wait)
        return push(draft, wait=wait)

    monkeypatch.setattr(queue, "push", recorded)
    return asked


def test_a_push_that_may_not_wait_stores_nothing_while_another_connection_holds_the_lock(
    sqlite_file: Path, other_connection: sqlite3.Connection
) -> None:
    queue = SqlTaskQueue(_engine(sqlite_file), FakeClock())
    other_connection.execute("BEGIN IMMEDIATE")
    with pytest.raises(WouldWait):
        queue.push(_draft(), wait=False)
    other_connection.execute("ROLLBACK")
    assert queue.qsize("boefje") == 0
    pushed = queue.push(_draft(), wait=False)  # the lock is free: no waiting needed
    assert queue.get(pushed.id).status.value == "queued"


@pytest.mark.parametrize(("with_id", "asked"), [(False, [False]), (True, [True])])
def test_a_push_is_tried_on_the_event_loop_unless_it_reads_a_task_first(
    sqlite_file: Path, monkeypatch: pytest.MonkeyPatch, with_id: bool, asked: list[bool]
) -> None:
    clock = FakeClock()
    queue = SqlTaskQueue(_engine(sqlite_file), clock)
    waits = _recording_pushes(queue, monkeypatch)
    item: dict[str, Any] = {"priority": 1, "organisation": "org1", "data": boefje_data()}
    if with_id:  # a runner pushing back a task: its id is looked up first, a read that may wait
        item["id"] = "7f1c2a64-3c1b-4f0e-9a43-2f0c8d3f5e11"
    with TestClient(create_app(queue, SqlScheduleStore(queue.engine, clock), clock)) as client:
        answer = client.post("/schedulers/boefje/push", json=item)
    assert answer.status_code == 201, answer.text
    assert waits == asked


def test_a_push_waits_for_the_lock_on_a_thread_while_the_api_goes_on_answering(
    sqlite_file: Path, other_connection: sqlite3.Connection
) -> None:
    engine = build_engine(f"sqlite:///{sqlite_file}", busy_timeout_ms=BUSY_TIMEOUT_MS)
    queue = SqlTaskQueue(engine, FakeClock())
    item = {"priority": 1, "organisation": "org1", "data": boefje_data()}
    answer = _answered_once_the_lock_is_free(queue, other_connection, "push", item)
    assert answer.status_code == 201, answer.text
    assert queue.get(uuid.UUID(answer.json()["id"])).status.value == "queued"


def test_a_push_asks_the_katalogus_on_a_thread_and_then_from_its_cache_on_the_event_loop(
    sqlite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first push of an organisation needs the Katalogus (nothing cached): tried on the event loop, it
    goes to a thread; the next one finds the plugin cached and is served on the event loop."""
    clock = FakeClock()
    queue = SqlTaskQueue(_engine(sqlite_file), clock)
    waits = _recording_pushes(queue, monkeypatch)
    with KatFakeServer() as server:
        server.add_organisation(Organisation(id="org1"))
        server.add_plugin("org1", boefje("dns-records", ["Hostname"]))
        kat = connect(server, clock, cache_ttl=30)
        manual = ManualPushes(kat.katalogus, clock)
        app = create_app(queue, SqlScheduleStore(queue.engine, clock), clock, manual_pushes=manual)
        with TestClient(app) as client:
            for name in ("a", "b"):
                data = boefje_data(f"Hostname|internet|{name}")
                item = {"priority": 1, "organisation": "org1", "data": data}
                assert client.post("/schedulers/boefje/push", json=item).status_code == 201
        kat.close()
        assert server.hits(f"{KATALOGUS}/v1/organisations/org1/plugins") == 1
    assert waits == [True, False]  # the first never reached the store inline: the Katalogus came first
