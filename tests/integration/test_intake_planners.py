"""End to end: RabbitMQ → consumer → real planners → real SQLite queue, with the KAT services answered by the
loopback fake through the real HTTP clients. Bodies are written out as Octopoes and Bytes publish them."""

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from katsched.clock import SystemClock
from katsched.core.models import Organisation, Plugin, Task, TaskStatus
from katsched.core.ports import TaskQuery
from katsched.intake import ConsumerState, QueueConsumer, mutation_handler, raw_file_handler, sample_mutation
from katsched.intake.amqp import REASON_HEADER
from katsched.schedulers.boefje import BoefjePlanner
from katsched.schedulers.normalizer import NormalizerPlanner
from katsched.store.engine import build_engine
from katsched.store.lookups import SqlTaskStore
from katsched.store.migrate import upgrade
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.store.tables import tasks
from tests.contract.kat_fake_server import KATALOGUS, KatClients, KatFakeServer, connect
from tests.integration.test_intake_publish import (
    AMQP_URL,
    DEADLINE,
    FAST,
    Broker,
    HoldAt,
    running,
    scratch_queue,
    wait_until,
)

pytestmark = [pytest.mark.amqp, pytest.mark.integration]

ORG = "org1"
BOEFJES = ["dns-records", "nmap", "whois"]


def boefje(plugin_id: str) -> Plugin:
    return Plugin(id=plugin_id, type="boefje", enabled=True, scan_level=1, consumes=["Hostname"], produces=[])


def normalizer(plugin_id: str, mime: str) -> Plugin:
    return Plugin(id=plugin_id, type="normalizer", enabled=True, consumes=[mime], produces=[])


class World:
    """One organisation with three boefjes for hostnames and one normalizer, a queue in SQLite, planners."""

    def __init__(self, directory: Path, server: KatFakeServer) -> None:
        server.add_organisation(Organisation(id=ORG))
        for plugin_id in BOEFJES:
            server.add_plugin(ORG, boefje(plugin_id))
        server.add_plugin(ORG, normalizer("kat_dns_normalize", "boefje/dns-records"))
        self.server = server
        self.clients: KatClients = connect(server, SystemClock())
        self.engine = build_engine(f"sqlite:///{directory / 'katsched.db'}")
        upgrade(self.engine)
        clock = SystemClock()
        self.queue = SqlTaskQueue(self.engine, clock)
        store = SqlTaskStore(self.queue)
        self.boefjes = BoefjePlanner(
            tasks=store,
            schedules=SqlScheduleStore(self.engine, clock),
            seen=SqlSeenPlugins(self.engine),
            catalog=self.clients.katalogus,
            objects=self.clients.octopoes,
            raw_data=self.clients.bytes,
            clock=clock,
        )
        self.normalizers = NormalizerPlanner(tasks=store, catalog=self.clients.katalogus, clock=clock)

    def tasks(self, scheduler_id: str) -> list[Task]:
        return self.queue.list_tasks(TaskQuery(scheduler_id=scheduler_id, limit=None)).tasks

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(tasks)).scalar_one())

    def distinct_hashes(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count(tasks.c.hash.distinct()))).scalar_one())

    def close(self) -> None:
        self.clients.close()
        self.engine.dispose()


@pytest.fixture
def queue_name(broker: Broker) -> Iterator[str]:
    yield from scratch_queue(broker)


@pytest.fixture
def raw_queue(broker: Broker) -> Iterator[str]:
    yield from scratch_queue(broker)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with KatFakeServer() as server:
        world = World(tmp_path, server)
        yield world
        world.close()


def mutation_consumer(world: World, queue: str, **options: object) -> QueueConsumer:
    return QueueConsumer(
        AMQP_URL,
        queue,
        mutation_handler(world.boefjes),
        reconnect_backoff=FAST,
        requeue_backoff=FAST,
        **options,  # type: ignore[arg-type]
    )


OCTOPOES_MUTATION = {
    "operation": "create",
    "primary_key": "Hostname|internet|a.example",
    "value": {
        "primary_key": "Hostname|internet|a.example",
        "object_type": "Hostname",
        "scan_profile": {
            "scan_profile_type": "declared",
            "reference": "Hostname|internet|a.example",
            "level": 2,
            "user_id": 1,
        },
        "name": "a.example",
        "network": "Network|internet",
    },
    "client_id": ORG,
}

BYTES_EVENT = {
    "event_id": "raw_file_received",
    "created_at": "2026-11-28T10:00:05.123456",
    "organization": ORG,
    "raw_data": {
        "id": "4d2b5d4e-0c3c-4d8b-a4a7-6e8b1f4b3c21",
        "boefje_meta": {
            "id": "8f6c2e2a-3f0b-4a3e-9a0e-2b8f9d3e7c11",
            "started_at": "2026-11-28T10:00:00.000000",
            "ended_at": "2026-11-28T10:00:04.000000",
            "boefje": {"id": "dns-records", "version": None},
            "input_ooi": "Hostname|internet|a.example",
            "arguments": {},
            "organization": ORG,
            "runnable_hash": None,
            "environment": {},
        },
        "mime_types": [{"value": "boefje/dns-records"}, {"value": "dns-records"}],
        "secure_hash": "sha512:abc",
        "signing_provider_url": None,
        "hash_retrieval_link": "https://bytes/hash/abc",
    },
}


def test_a_mutation_and_a_raw_file_as_published_become_the_expected_tasks(
    broker: Broker, queue_name: str, raw_queue: str, world: World
) -> None:
    raw_consumer = QueueConsumer(AMQP_URL, raw_queue, raw_file_handler(world.normalizers))
    with running(mutation_consumer(world, queue_name)) as mutations, running(raw_consumer) as raw_files:
        broker.publish(queue_name, json.dumps(OCTOPOES_MUTATION).encode())
        broker.publish(raw_queue, json.dumps(BYTES_EVENT).encode())
        wait_until(
            lambda: mutations.stats.acked == 1 and raw_files.stats.acked == 1, "both messages are acked"
        )
    boefje_tasks = world.tasks("boefje")
    assert sorted(task.data["boefje"]["id"] for task in boefje_tasks) == BOEFJES
    assert {task.data["input_ooi"] for task in boefje_tasks} == {"Hostname|internet|a.example"}
    assert {(task.organisation, task.status) for task in boefje_tasks} == {(ORG, TaskStatus.QUEUED)}
    [normalizer_task] = world.tasks("normalizer")
    assert normalizer_task.data["normalizer"]["id"] == "kat_dns_normalize"
    assert normalizer_task.data["raw_data"]["id"] == BYTES_EVENT["raw_data"]["id"]  # type: ignore[index]
    assert broker.ready(queue_name) == broker.ready(raw_queue) == 0


def test_poison_is_dead_lettered_and_the_next_mutation_is_planned(
    broker: Broker, queue_name: str, world: World
) -> None:
    without_value = dict(OCTOPOES_MUTATION, value=None)
    with running(mutation_consumer(world, queue_name, workers=1)) as consumer:
        broker.publish(queue_name, b"\xff\xfe", json.dumps(without_value).encode())
        broker.publish(queue_name, json.dumps(OCTOPOES_MUTATION).encode())
        wait_until(lambda: consumer.stats.acked == 1 and consumer.stats.dead_lettered == 2, "all are settled")
    assert len(world.tasks("boefje")) == 3
    reasons = [headers[REASON_HEADER] for headers, _ in broker.take_all(f"{queue_name}.dead")]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "value: required for operation create"


def test_a_katalogus_failing_for_a_while_delays_the_mutation_but_loses_and_duplicates_nothing(
    broker: Broker, queue_name: str, world: World
) -> None:
    world.server.fail_next(12, status=500, path_prefix=KATALOGUS)  # four requeues, each after three retries
    with running(mutation_consumer(world, queue_name)) as consumer:
        broker.publish(queue_name, json.dumps(OCTOPOES_MUTATION).encode())
        wait_until(lambda: consumer.stats.acked == 1, "the mutation is planned once the Katalogus recovers")
        assert consumer.stats.requeued == 4
        broker.publish(queue_name, json.dumps(OCTOPOES_MUTATION).encode())  # Octopoes says it again
        wait_until(lambda: consumer.stats.acked == 2, "the repeated mutation is handled")
    assert world.count() == world.distinct_hashes() == 3
    assert consumer.stats.dead_lettered == 0


def test_killing_the_connection_mid_stream_turns_every_mutation_into_its_tasks_exactly_once(
    broker: Broker, queue_name: str, world: World
) -> None:
    references = [f"Hostname|internet|host-{n}.example" for n in range(1000)]
    broker.publish(queue_name, *(sample_mutation(ORG, reference, 2) for reference in references))
    name = f"katsched-{uuid.uuid4().hex}"
    hold = HoldAt(mutation_handler(world.boefjes), 200)
    consumer = QueueConsumer(
        AMQP_URL, queue_name, hold, prefetch=50, connection_name=name, reconnect_backoff=FAST
    )
    with running(consumer):
        wait_until(
            hold.reached.is_set, "a fifth of the stream is planned, the last ones not yet acknowledged"
        )
        assert broker.kill_connection(name) == 1
        hold.release()
        wait_until(lambda: consumer.stats.reconnects == 1, "the consumer reconnects by itself")
        wait_until(
            lambda: world.count() >= 3000 and broker.ready(queue_name) == 0, "the whole stream is planned"
        )
        wait_until(lambda: broker.unacknowledged(queue_name) == 0, "every message is acked")
        assert consumer.stats.abandoned > 0
    assert world.count() == world.distinct_hashes() == 3000
    planned = {task.data["input_ooi"] for task in world.tasks("boefje")}
    assert planned == set(references)


def test_stop_during_a_stream_of_real_mutations_leaves_the_rest_for_the_next_run(
    broker: Broker, queue_name: str, world: World
) -> None:
    references = [f"Hostname|internet|host-{n}.example" for n in range(500)]
    broker.publish(queue_name, *(sample_mutation(ORG, reference, 2) for reference in references))
    hold = HoldAt(mutation_handler(world.boefjes), 50)
    consumer = QueueConsumer(AMQP_URL, queue_name, hold, prefetch=50)
    consumer.start()
    wait_until(hold.reached.is_set, "the stream is flowing, some messages planned but not acknowledged")
    stopper = threading.Thread(target=consumer.stop, kwargs={"timeout": 20})
    stopper.start()
    wait_until(lambda: consumer.state is ConsumerState.STOPPING, "the consumer is draining")
    hold.release()
    stopper.join(DEADLINE)
    assert consumer.state is ConsumerState.STOPPED
    acked, left = consumer.stats.acked, broker.ready(queue_name)
    assert 50 <= acked < 500
    assert acked + left == 500
    assert world.count() == 3 * acked  # the messages in hand at the stop were finished and acknowledged
    with running(mutation_consumer(world, queue_name)) as again:
        wait_until(lambda: world.count() == 1500, "the next run plans the rest")
        assert again.stats.consumed == left
    assert world.distinct_hashes() == 1500
