"""Three daemons on one PostgreSQL database consume 2,000 scan-profile mutations from one RabbitMQ queue as
competing consumers (issue 10): every expected boefje task exists exactly once. Each object's mutation is
published twice in a row, so two daemons often plan the same object at the same moment: the unique index of
migration 0012 and the push's `ON CONFLICT` keep one task, and the second new schedule of one identity joins
the first instead of failing (and dead-lettering) its message. KAT services: the loopback fake."""

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from katsched.intake import sample_mutation
from katsched.store.engine import build_engine, read
from katsched.store.tables import tasks
from tests.conftest import scratch_postgres
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.fleet import daemon_config
from tests.integration.test_daemon_full import raw_files  # noqa: F401 (a fixture)
from tests.integration.test_daemon_lifecycle import DaemonProcess, free_port
from tests.integration.test_intake_planners import boefje
from tests.integration.test_intake_publish import AMQP_URL, Broker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.amqp, pytest.mark.postgres]

DAEMONS = 3
OBJECTS = 1_000  # each published twice: 2,000 mutations
BOEFJES = ("dns-records", "nmap")
STARTUP = 180.0  # three interpreters importing everything at once on a shared two-core machine
CONSUMED = 600.0


@pytest.fixture
def fleet_database() -> Iterator[str]:
    with scratch_postgres("katsched_fleet_intake") as url:
        yield url


def hostname(n: int) -> str:
    return f"Hostname|internet|h{n}.example"


def start_fleet(
    tmp_path: Path, kat: KatFakeServer, url: str, mutations: str, raw_queue: str
) -> list[DaemonProcess]:
    amqp = f'url = "{AMQP_URL}"\nmutations_queue = "{mutations}"\nraw_files_queue = "{raw_queue}"\n'
    daemons = []
    for n in range(DAEMONS):
        home = tmp_path / f"d{n}"
        home.mkdir()
        config = daemon_config(home / "config.toml", url, kat, api_port=free_port(), amqp=amqp)
        daemons.append(DaemonProcess(config, home))
    return daemons


def boefje_tasks(url: str) -> list[tuple[str, str, str]]:
    """(hash, input_ooi, boefje id) of every boefje task in the database."""
    engine = build_engine(url)
    try:
        statement = select(tasks.c.hash, tasks.c.data).where(tasks.c.scheduler_id == "boefje")
        with read(engine) as connection:
            return [(h, data["input_ooi"], data["boefje"]["id"]) for h, data in connection.execute(statement)]
    finally:
        engine.dispose()


def test_three_daemons_consuming_2000_mutations_queue_every_task_exactly_once(
    tmp_path: Path,
    kat: KatFakeServer,
    broker: Broker,
    mutations: str,
    raw_files: str,  # noqa: F811
    fleet_database: str,
) -> None:
    kat.add_plugin("acme", boefje("nmap"))
    daemons = start_fleet(tmp_path, kat, fleet_database, mutations, raw_files)
    try:
        for daemon in daemons:
            daemon.wait_for(f"consumer_connected queue={mutations}", timeout=STARTUP)
        bodies = [sample_mutation("acme", hostname(n), 2) for n in range(OBJECTS) for _ in range(2)]
        broker.publish(mutations, *bodies)
        expected = {(hostname(n), plugin) for n in range(OBJECTS) for plugin in BOEFJES}
        wait_until(
            lambda: (
                len(boefje_tasks(fleet_database)) >= len(expected)
                and broker.ready(mutations) == 0
                and broker.unacknowledged(mutations) == 0
            ),
            "every mutation is consumed and acknowledged",
            timeout=CONSUMED,
        )
        for daemon in daemons:
            daemon.signal(signal.SIGTERM)
        assert [daemon.wait() for daemon in daemons] == [0] * DAEMONS
    finally:
        for daemon in daemons:
            daemon.kill()
    found = boefje_tasks(fleet_database)
    assert Counter((ooi, plugin) for _, ooi, plugin in found) == Counter(expected), "each task exactly once"
    assert len({identity for identity, _, _ in found}) == len(found)
    logs = [daemon.log() for daemon in daemons]
    dead = [line for log in logs for line in log.splitlines() if "dead_lettered" in line or "ERROR" in line]
    assert not broker.exists(f"{mutations}.dead") or broker.ready(f"{mutations}.dead") == 0, dead
    assert all("message_failed" not in log and "message_dead_lettered" not in log for log in logs)
    pushed = [log.count("task_pushed ") for log in logs]
    assert sum(pushed) == len(expected), pushed
    assert sum(1 for count in pushed if count) >= 2, f"the daemons did not share the queue: {pushed}"
