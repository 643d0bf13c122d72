"""The daemon with the full configuration: API, recurring jobs, both RabbitMQ consumers and the three KAT
services (a loopback fake of them). Every component runs, reports its state and turns an event into a task."""

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from katsched.clock import SystemClock
from katsched.core.ports import TaskQuery
from katsched.intake import sample_mutation
from katsched.store.daemon_state import DaemonStateStore
from katsched.store.engine import build_engine
from katsched.store.queue import SqlTaskQueue
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.support import write_daemon_config
from tests.integration.test_daemon_lifecycle import DaemonProcess, free_port, http_json, wait_until
from tests.integration.test_intake_publish import AMQP_URL, Broker, scratch_queue

pytestmark = [pytest.mark.integration, pytest.mark.amqp]


@pytest.fixture
def raw_files(broker: Broker) -> Iterator[str]:
    yield from scratch_queue(broker)


def full_config(tmp_path: Path, kat: KatFakeServer, mutations: str, raw_files: str, port: int) -> Path:
    tail = "[recurring]\nmetrics_interval = 1\n"
    return write_daemon_config(
        tmp_path, kat, AMQP_URL, port=port, mutations=mutations, raw_files=raw_files, octopoes=True, tail=tail
    )


def components(tmp_path: Path) -> dict[str, Any]:
    engine = build_engine(f"sqlite:///{tmp_path / 'katsched.db'}")
    try:
        instances = DaemonStateStore(engine).instances()
    finally:
        engine.dispose()
    return instances[0].components if instances else {}


def all_up(tmp_path: Path) -> bool:
    state = components(tmp_path)
    consumers = [consumer["state"] for consumer in state.get("consumers", {}).values()]
    services = state.get("services", {})
    return (
        consumers == ["connected", "connected"]
        and all(services.get(name) == "ok" for name in ("database", "katalogus", "octopoes", "bytes"))
        and state.get("organisations") == 1
    )


def tasks_for(tmp_path: Path, input_ooi: str) -> int:
    engine = build_engine(f"sqlite:///{tmp_path / 'katsched.db'}")
    try:
        return SqlTaskQueue(engine, SystemClock()).list_tasks(TaskQuery(input_ooi=input_ooi)).count
    finally:
        engine.dispose()


def test_the_full_configuration_runs_every_component(
    tmp_path: Path, kat: KatFakeServer, broker: Broker, mutations: str, raw_files: str
) -> None:
    port = free_port()
    daemon = DaemonProcess(full_config(tmp_path, kat, mutations, raw_files, port), tmp_path)
    try:
        ready = daemon.wait_for("daemon_ready")
        assert f"components=api,recurring,intake-{mutations},intake-{raw_files}" in ready
        wait_until(lambda: all_up(tmp_path), "the heartbeat shows every consumer and service up")
        jobs = components(tmp_path)["jobs"]
        assert {"lease_sweep", "retention", "metrics", "organisations", "boefje.reschedule"} <= jobs.keys()
        assert {"boefje.new_plugins", "boefje.rerank", "report.reschedule"} <= jobs.keys()

        health = http_json(f"http://127.0.0.1:{port}/health?externals=true")
        assert {result["service"]: result["healthy"] for result in health["results"]} == {
            "database": True,
            "katalogus": True,
            "octopoes": True,
            "bytes": True,
            f"intake:{mutations}": True,
            f"intake:{raw_files}": True,
        }
        assert health["healthy"] is True

        broker.publish(mutations, sample_mutation("acme", "Hostname|internet|a.example", 2))
        wait_until(lambda: tasks_for(tmp_path, "Hostname|internet|a.example") == 1, "the mutation is a task")

        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    assert components(tmp_path)["consumers"][mutations]["acked"] == 1


def test_a_service_that_goes_down_degrades_the_daemon_and_never_stops_it(
    tmp_path: Path, kat: KatFakeServer, mutations: str, raw_files: str
) -> None:
    daemon = DaemonProcess(full_config(tmp_path, kat, mutations, raw_files, free_port()), tmp_path)
    try:
        daemon.wait_for("daemon_ready")
        wait_until(lambda: all_up(tmp_path), "every service is up")
        kat.fail_next(10_000, status=503, path_prefix="/katalogus")
        wait_until(
            lambda: components(tmp_path).get("services", {}).get("katalogus") == "down",
            "the heartbeat reports the Katalogus down",
        )
        assert "service_health_changed service=katalogus health=down" in daemon.log()
        assert daemon.process.poll() is None
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.kill()
