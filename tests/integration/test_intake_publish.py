"""The publishing side (`Publisher`, `katsched events publish-test`), and the broker helpers that the other
intake tests share. They need the RabbitMQ broker on 127.0.0.1:5672 and fail, never skip, without it."""

import contextlib
import json
import os
import select
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from katsched.backoff import Backoff
from katsched.errors import ServiceUnavailable
from katsched.intake import Publisher, decode_mutation, decode_raw_file
from katsched.intake.amqp import QueueConsumer
from tests.integration.support import Run

pytestmark = [pytest.mark.amqp, pytest.mark.integration]

AMQP_URL = os.environ.get("KATSCHED_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
DEADLINE = 30.0
FAST = Backoff(initial=0.02, maximum=0.2)  # reconnect and requeue pauses short enough for tests


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Polls every 20 ms; fails the test, naming `what`, when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.02)


class Broker:
    """Test-side access to RabbitMQ; a fresh connection per call, so no idle connection misses heartbeats."""

    def __init__(self, url: str = AMQP_URL) -> None:
        self.url = url

    def _connect(self) -> Any:
        try:
            return pika.BlockingConnection(pika.URLParameters(self.url))
        except pika.exceptions.AMQPConnectionError as error:
            pytest.fail(
                f"RabbitMQ is not reachable at {self.url} ({error!r}); amqp tests need it, never skip"
            )

    def publish(self, queue: str, *bodies: bytes, declare: bool = True) -> None:
        connection = self._connect()
        try:
            channel = connection.channel()
            if declare:
                channel.queue_declare(queue=queue, durable=True)
            channel.confirm_delivery()
            for body in bodies:
                channel.basic_publish(exchange="", routing_key=queue, body=body)
        finally:
            connection.close()

    def declare(self, queue: str, **options: Any) -> None:
        connection = self._connect()
        try:
            connection.channel().queue_declare(queue=queue, **options)
        finally:
            connection.close()

    def ready(self, queue: str) -> int:
        """Messages waiting in the queue (not those delivered and unacknowledged)."""
        connection = self._connect()
        try:
            return int(connection.channel().queue_declare(queue=queue, passive=True).method.message_count)
        finally:
            connection.close()

    def exists(self, queue: str) -> bool:
        try:
            self.ready(queue)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        return True

    def take_all(self, queue: str) -> list[tuple[dict[str, Any], bytes]]:
        """Every message waiting in the queue, with its headers; they are removed."""
        connection = self._connect()
        taken = []
        try:
            channel = connection.channel()
            while True:
                method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
                if method is None:
                    return taken
                taken.append((dict(properties.headers or {}), body))
        finally:
            connection.close()

    def delete(self, *queues: str) -> None:
        connection = self._connect()
        try:
            channel = connection.channel()
            for queue in queues:
                channel.queue_delete(queue=queue)
        finally:
            connection.close()

    def unacknowledged(self, queue: str) -> int:
        for line in _rabbitmqctl("list_queues", "name", "messages_unacknowledged").splitlines():
            name, _, count = line.partition("\t")
            if name == queue:
                return int(count)
        return 0

    def kill_connection(self, connection_name: str) -> int:
        """Closes, from the broker's side, every connection that carries this client name."""
        closed = 0
        for line in _rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
            pid, _, properties = line.partition("\t")
            if f'{{"connection_name","{connection_name}"}}' in properties:
                _rabbitmqctl("close_connection", pid, "katsched test: connection killed")
                closed += 1
        return closed


def _rabbitmqctl(*args: str) -> str:
    command = ["rabbitmqctl", "-q", *args]
    if args[0].startswith("list_"):
        command.insert(3, "--no-table-headers")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


class HoldAt:
    """Wraps a handler: once `count` messages are handled (committed), every call waits after its work until
    `release()`, so that a test can act while the stream is certainly flowing: messages committed but not yet
    acknowledged, others prefetched, the rest still in the queue."""

    def __init__(self, handler: Callable[[bytes], object], count: int) -> None:
        self._handler = handler
        self._count = count
        self._handled = 0
        self._lock = threading.Lock()
        self.reached = threading.Event()
        self._released = threading.Event()

    def __call__(self, body: bytes) -> None:
        self._handler(body)
        with self._lock:
            self._handled += 1
            if self._handled >= self._count:
                self.reached.set()
        if self.reached.is_set():
            assert self._released.wait(DEADLINE), "never released"

    def release(self) -> None:
        self._released.set()


def scratch_queue(broker: Broker) -> Iterator[str]:
    """A queue name no other test uses; the queue and its dead-letter queue are deleted afterwards."""
    name = f"katsched_test_{uuid.uuid4().hex[:12]}"
    yield name
    broker.delete(name, f"{name}.dead")


@contextlib.contextmanager
def running(consumer: QueueConsumer) -> Iterator[QueueConsumer]:
    """Starts the consumer, waits until it consumes, and stops it afterwards (whatever the test did)."""
    consumer.start()
    wait_until(lambda: consumer.connected, f"the consumer of {consumer.queue} is connected")
    try:
        yield consumer
    finally:
        consumer.stop(timeout=10)


class TcpProxy:
    """A loopback TCP relay to the broker, to take "the network" away and bring it back on the same port."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672)) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def url(self, query: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F{query}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="test-proxy").start()

    def stop(self) -> None:
        """Refuses new connections and cuts the open ones, as a broker that went away."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=_relay, args=(client, upstream), daemon=True, name="test-relay").start()


def _relay(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            readable, _, _ = select.select([a, b], [], [], 0.5)
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)
    except (OSError, ValueError):
        return
    finally:
        a.close()
        b.close()


# Tests of the publishing side.


@pytest.fixture
def queue_name(broker: Broker) -> Iterator[str]:
    yield from scratch_queue(broker)


def add_amqp_section(config_file: Path, url: str, **queues: str) -> None:
    lines = [f'url = "{url}"', *(f'{key} = "{value}"' for key, value in queues.items())]
    config_file.write_text(config_file.read_text() + "\n[amqp]\n" + "\n".join(lines) + "\n")


def test_publish_test_mutation_is_octopoes_shaped(
    broker: Broker, queue_name: str, config_file: Path, katsched: Run
) -> None:
    add_amqp_section(config_file, AMQP_URL, mutations_queue=queue_name)
    done = katsched(
        "events", "publish-test", "mutation", "--org", "org1", "--ooi", "Hostname|internet|a.example",
        "--level", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"to {queue_name} at amqp://127.0.0.1:5672/%2F\n" in done.stdout
    [(_, body)] = broker.take_all(queue_name)
    document = json.loads(body)
    assert document == {
        "operation": "create",
        "primary_key": "Hostname|internet|a.example",
        "value": {
            "primary_key": "Hostname|internet|a.example",
            "object_type": "Hostname",
            "scan_profile": {
                "scan_profile_type": "declared",
                "reference": "Hostname|internet|a.example",
                "level": 3,
                "user_id": None,
            },
        },
        "client_id": "org1",
    }
    assert decode_mutation(body).value is not None


def test_publish_test_raw_file_is_bytes_shaped(
    broker: Broker, queue_name: str, config_file: Path, katsched: Run
) -> None:
    add_amqp_section(config_file, AMQP_URL, raw_files_queue=queue_name)
    done = katsched(
        "events", "publish-test", "raw-file", "--org", "org1", "--boefje", "dns-records",
        "-m", "boefje/dns-records", "-m", "text/plain", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [(_, body)] = broker.take_all(queue_name)
    document = json.loads(body)
    assert json.loads(done.stdout)["body"] == document
    assert set(document) == {"event_id", "created_at", "organization", "raw_data"}
    assert document["event_id"] == "raw_file_received"
    raw = document["raw_data"]
    assert set(raw) == {
        "id", "boefje_meta", "mime_types", "secure_hash", "signing_provider_url", "hash_retrieval_link",
    }  # fmt: skip
    assert set(raw["boefje_meta"]) == {
        "id", "started_at", "ended_at", "boefje", "input_ooi", "arguments", "organization", "runnable_hash",
        "environment",
    }  # fmt: skip
    assert raw["mime_types"] == [{"value": "boefje/dns-records"}, {"value": "text/plain"}]
    event = decode_raw_file(body)
    assert event.raw_data.boefje_meta.boefje.id == "dns-records"


def test_publish_test_reports_an_unreachable_broker(config_file: Path, katsched: Run) -> None:
    proxy = TcpProxy()  # never started: nothing listens on its port
    add_amqp_section(config_file, proxy.url())
    done = katsched("events", "publish-test", "mutation", "--org", "org1")
    assert done.returncode == 8
    assert done.stderr.startswith(f"katsched: error: RabbitMQ at amqp://127.0.0.1:{proxy.port}/%2F: ")
    assert "guest" not in done.stderr


def test_publisher_raises_service_unavailable_when_the_broker_is_away() -> None:
    with pytest.raises(ServiceUnavailable), Publisher(TcpProxy().url()):
        pass
