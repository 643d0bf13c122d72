"""The planners on the real KAT clients over loopback (`kat_fake_server`), and with the database failing.

A service that answers 500, times out or refuses connections makes the planner defer the work: the error
propagates after one log line (the consumer requeues the message, the recurring job tries again), what was
committed before stays committed, and the same input succeeds once the service is back, without duplicates.
"""

import logging
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest

from katsched.core.models import OOI, Organisation
from katsched.core.ports import ObjectGraph, PluginCatalog
from katsched.errors import ServiceUnavailable, StorageError
from katsched.kat.http import ServiceHttp, build_client
from katsched.kat.katalogus import KatalogusClient
from katsched.store.engine import build_engine
from katsched.testing import FakeClock
from tests.stores import sql_stores
from tests.unit.test_planner_normalizer import normalizer
from tests.world import (
    ORG,
    World,
    boefje,
    boefje_data,
    hostname,
    mutation,
    raw_event,
)

from .kat_fake_server import FAST_RETRY, KATALOGUS, OCTOPOES, KatClients, KatFakeServer, connect, refused_url

PLUGINS = f"{KATALOGUS}/v1/organisations/{ORG}/plugins"
CONFIGS = f"{KATALOGUS}/v1/configs"
OBJECT = f"{OCTOPOES}/{ORG}/object"
OBJECTS = f"{OCTOPOES}/{ORG}/objects"
BOEFJE_META = "/bytes-api/bytes/boefje_meta"
ATTEMPTS = FAST_RETRY.attempts  # a failure that outlasts the client's retries


@pytest.fixture
def world(world_on_sql: World) -> World:
    """The planners on the real database: these cases are about the services and the database failing."""
    return world_on_sql


@pytest.fixture(scope="module")
def server() -> Iterator[KatFakeServer]:
    with KatFakeServer() as server:
        yield server


@pytest.fixture
def kat(server: KatFakeServer, clock: FakeClock) -> Iterator[KatClients]:
    server.reset()
    server.add_organisation(Organisation(id=ORG))
    server.add_plugin(ORG, boefje())
    server.add_plugin(ORG, boefje("whois", consumes=[]))
    server.add_plugin(ORG, normalizer())
    for name in ("a.org", "b.org", "c.org"):
        server.add_object(ORG, hostname(name))
    clients = connect(server, clock, cache_ttl=30, timeout=0.2, page_size=1)
    yield clients
    clients.close()


class Switch:
    """Stands in for a service, so a test can take it down and bring it back while the planner holds it."""

    def __init__(self, target: object) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def deferred(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "katsched.schedulers" and record.getMessage().startswith("planner_deferred")
    ]


@pytest.mark.parametrize("failure", ["500", "timeout", "refused"])
def test_the_katalogus_failing_defers_a_mutation_until_it_is_back(
    world: World,
    kat: KatClients,
    server: KatFakeServer,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    catalog = Switch(kat.katalogus)
    if failure == "500":
        server.fail_next(ATTEMPTS, 500, PLUGINS)
    elif failure == "timeout":
        server.delay_next(ATTEMPTS, 0.5, PLUGINS)
    else:
        http = ServiceHttp(
            "katalogus", build_client(refused_url(), timeout=0.2), retry=FAST_RETRY, sleep=kat.pauses.append
        )
        catalog.target = KatalogusClient(http, clock=clock)
    planner = world.boefjes(catalog=cast(PluginCatalog, catalog), objects=kat.octopoes, raw_data=kat.bytes)
    with caplog.at_level(logging.WARNING), pytest.raises(ServiceUnavailable):
        planner.plan_for_mutation(mutation(hostname("a.org")))
    assert world.all_tasks() == []
    (line,) = deferred(caplog)
    assert line.startswith("planner_deferred planner=boefje.mutation org=org1 error='katalogus: GET ")
    catalog.target = kat.katalogus
    assert planner.plan_for_mutation(mutation(hostname("a.org"))).created == 1
    assert len(world.queued()) == 1


def test_bytes_failing_defers_a_mutation(world: World, kat: KatClients, server: KatFakeServer) -> None:
    planner = world.boefjes(catalog=kat.katalogus, objects=kat.octopoes, raw_data=kat.bytes)
    server.fail_next(ATTEMPTS, 503, BOEFJE_META)
    with pytest.raises(ServiceUnavailable):
        planner.plan_for_mutation(mutation(hostname("a.org")))
    assert world.all_tasks() == []
    assert planner.plan_for_mutation(mutation(hostname("a.org"))).created == 1


def test_octopoes_failing_mid_rescheduling_loses_nothing_and_disables_nothing(
    world: World, kat: KatClients, server: KatFakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    now = world.clock.now()
    first = world.schedule_rows.create(
        "boefje", ORG, boefje_data("whois", None), "f" * 32, deadline_at=now - timedelta(hours=2)
    )
    second = world.schedule_rows.create(
        "boefje", ORG, boefje_data("dns-records", hostname("a.org").primary_key), "e" * 32,
        deadline_at=now - timedelta(hours=1),
    )  # fmt: skip
    planner = world.boefjes(
        catalog=kat.katalogus, objects=kat.octopoes, raw_data=kat.bytes, reschedule_batch_size=1
    )
    server.fail_next(ATTEMPTS, 500, OBJECT)
    with caplog.at_level(logging.WARNING), pytest.raises(ServiceUnavailable):
        planner.reschedule_due(ORG)
    assert [t.schedule_id for t in world.queued()] == [first.id]  # the first batch stays committed
    assert world.schedule_rows.get(second.id).enabled is True  # a failure is not an absence
    assert deferred(caplog)[0].startswith(
        "planner_deferred planner=boefje.reschedule org=org1 error='octopoes:"
    )
    summary = planner.reschedule_due(ORG)
    assert summary.created == 1 and summary.disabled == {}
    assert sorted(str(t.schedule_id) for t in world.queued()) == sorted([str(first.id), str(second.id)])


class FailingAfterFirstPage:
    """The real Octopoes client, whose enumeration fails after its first page (of one object)."""

    def __init__(self, octopoes: ObjectGraph, server: KatFakeServer) -> None:
        self._octopoes = octopoes
        self._server = server

    def objects(self, *args: Any, **kwargs: Any) -> Iterator[OOI]:
        listed = self._octopoes.objects(*args, **kwargs)
        yield next(listed)
        self._server.fail_next(ATTEMPTS, 500, OBJECTS)
        yield from listed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._octopoes, name)


def test_octopoes_failing_mid_enumeration_loses_nothing(
    world: World, kat: KatClients, server: KatFakeServer
) -> None:
    failing = cast(ObjectGraph, FailingAfterFirstPage(kat.octopoes, server))
    planner = world.boefjes(
        catalog=kat.katalogus, objects=failing, raw_data=kat.bytes, reschedule_batch_size=1
    )
    with pytest.raises(ServiceUnavailable):
        planner.plan_new_plugins(ORG)
    assert len(world.queued()) == 1
    recovered = world.boefjes(catalog=kat.katalogus, objects=kat.octopoes, raw_data=kat.bytes)
    summary = recovered.plan_new_plugins(ORG)
    assert summary.created == 2 and summary.skipped == {"within_grace_period": 1}
    assert len(world.queued()) == 3
    assert (
        recovered.plan_new_plugins(ORG).created == 0 and server.hits(OBJECTS) == 1 + ATTEMPTS + 3
    )  # pages of one object


def test_the_katalogus_failing_defers_a_raw_file(
    world: World, kat: KatClients, server: KatFakeServer
) -> None:
    planner = world.normalizers(catalog=kat.katalogus)
    event = raw_event()
    server.fail_next(ATTEMPTS, 502, PLUGINS)
    with pytest.raises(ServiceUnavailable):
        planner.plan_for_raw_file(event)
    assert planner.plan_for_raw_file(event).created == 1
    assert planner.plan_for_raw_file(event).skipped == {"already_planned": 1}


def test_a_burst_of_mutations_costs_one_katalogus_request_per_kind_of_lookup(
    world: World, kat: KatClients, server: KatFakeServer
) -> None:
    planner = world.boefjes(catalog=kat.katalogus, objects=kat.octopoes, raw_data=kat.bytes)
    for n in range(50):
        planner.plan_for_mutation(mutation(hostname(f"host-{n}.org")))
    assert len(world.queued()) == 50
    assert server.hits(PLUGINS) == 1 and server.hits(CONFIGS) == 1


def test_the_database_failing_defers_the_work(
    world: World, kat: KatClients, caplog: pytest.LogCaptureFixture
) -> None:
    if world.engine.dialect.name != "sqlite":
        pytest.skip("a held write lock is how SQLite fails; PostgreSQL would wait on the row instead")
    url = world.engine.url.render_as_string(hide_password=False)
    impatient = World(sql_stores(build_engine(url, busy_timeout_ms=50), world.clock), world.clock)
    planner = impatient.boefjes(catalog=kat.katalogus, objects=kat.octopoes, raw_data=kat.bytes)
    database = world.engine.url.database
    assert database is not None
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(StorageError, match="database is locked"):
            planner.plan_for_mutation(mutation(hostname("a.org")))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    (line,) = deferred(caplog)
    assert line.startswith(
        "planner_deferred planner=boefje.mutation org=org1 error='database error: database is locked"
    )
    assert planner.plan_for_mutation(mutation(hostname("a.org"))).created == 1
    assert planner.plan_for_mutation(mutation(hostname("a.org"))).created == 0
    assert len(world.queued()) == 1
    impatient.engine.dispose()


def test_a_plugin_disabled_a_moment_ago_disables_its_due_schedule_and_gets_no_task(
    world: World, kat: KatClients, server: KatFakeServer
) -> None:
    reference = hostname("a.org").primary_key
    schedule = world.schedule_rows.create(
        "boefje", ORG, boefje_data("dns-records", reference), "d" * 32,
        deadline_at=world.clock.now() + timedelta(seconds=10),
    )  # fmt: skip
    enabled = kat.katalogus.plugin(ORG, "dns-records")  # the Katalogus cache (30 s) now holds it enabled
    assert enabled is not None and enabled.enabled
    server.add_plugin(ORG, boefje(enabled=False))  # disabled in the Katalogus
    world.clock.advance(timedelta(seconds=11))  # the schedule is due; the cache is still fresh
    planner = world.boefjes(catalog=kat.katalogus, objects=kat.octopoes, raw_data=kat.bytes)
    before = server.hits(PLUGINS)
    summary = planner.reschedule_due(ORG)
    assert world.schedule_rows.get(schedule.id).enabled is False
    assert summary.disabled == {"plugin_disabled": 1}
    assert world.all_tasks() == []
    assert server.hits(PLUGINS) == before + 1  # the plugins read once for the run
