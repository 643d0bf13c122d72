"""`/health` lists the daemons on the database (the peers table), on SQLite and PostgreSQL: which one answers,
each one not stopped with its heartbeat and leases, a silent one flagged stale; a stale peer does not make
this process unhealthy."""

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from katsched.api import create_app
from katsched.api.context import Peers
from katsched.store.daemon_state import DaemonState, DaemonStateStore
from katsched.store.engine import build_engine
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.testing import FakeClock

STALE_AFTER = 30.0


def client(engine: Engine, clock: FakeClock, instance: str | None) -> TestClient:
    peers = Peers(DaemonStateStore(engine).live, STALE_AFTER, instance)
    app = create_app(SqlTaskQueue(engine, clock), SqlScheduleStore(engine, clock), clock, peers=peers)
    return TestClient(app)


def register(engine: Engine, clock: FakeClock, name: str, beat_ago: float, **components: object) -> None:
    now = clock.now()
    beat = now - timedelta(seconds=beat_ago)
    state = DaemonState(name, name.split(":")[0], int(name.split(":")[1]), "0.1.0", now, beat)
    DaemonStateStore(engine).register(DaemonState(**{**state.__dict__, "components": dict(components)}))


def test_health_lists_every_daemon_not_stopped(engine: Engine, clock: FakeClock) -> None:
    register(engine, clock, "a:1", 2, leases=["lease_sweep", "retention"])
    register(engine, clock, "b:2", STALE_AFTER + 1)  # killed: silent, never said it stopped
    register(engine, clock, "c:3", 5, leases="not a list")  # an odd row is read as holding nothing
    register(engine, clock, "d:4", 1)
    DaemonStateStore(engine).mark_stopped("d:4", clock.now(), {})

    body = client(engine, clock, "a:1").get("/health").json()
    assert body["healthy"] is True  # a silent peer is the other daemons' business, not this one's
    assert body["additional"]["instance"] == "a:1"
    peers = body["additional"]["peers"]
    assert [(p["id"], p["hostname"], p["pid"], p["stale"], p["leases"]) for p in peers] == [
        ("a:1", "a", 1, False, ["lease_sweep", "retention"]),
        ("c:3", "c", 3, False, []),
        ("b:2", "b", 2, True, []),
    ]
    assert peers[0]["version"] == "0.1.0"
    assert peers[0]["started_at"] == clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_api_on_its_own_is_no_daemon(engine: Engine, clock: FakeClock) -> None:
    body = client(engine, clock, None).get("/health").json()
    assert body["additional"] == {"instance": None, "peers": []}


def test_without_the_database_there_are_no_peers_and_health_is_false(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()  # a directory where the file should be: every statement fails
    engine = build_engine(f"sqlite:///{tmp_path / 'db'}")
    try:
        body = client(engine, FakeClock(), "a:1").get("/health").json()
    finally:
        engine.dispose()
    assert (body["healthy"], body["results"][0], body["additional"]) == (
        False,
        {**body["results"][0], "service": "database", "healthy": False},
        None,
    )
