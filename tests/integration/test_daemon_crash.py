"""The daemon under load: SIGTERM drains within the bound and loses nothing; kill -9 loses no committed
task and the next start carries on (consumes the rest, queues again what the dead process handed out)."""

import signal
import threading
import time
import urllib.error
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from katsched.core.models import TaskStatus
from katsched.daemon import DRAIN_TIMEOUT
from katsched.intake import sample_mutation
from katsched.store.engine import build_engine
from katsched.store.tables import tasks
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.support import write_daemon_config
from tests.integration.test_daemon_lifecycle import DaemonProcess, free_port, http_json, wait_until
from tests.integration.test_intake_publish import AMQP_URL, Broker

pytestmark = [pytest.mark.integration, pytest.mark.amqp]

MESSAGES = 1500


def config(tmp_path: Path, kat: KatFakeServer, mutations: str, port: int) -> Path:
    tail = "[recurring]\nsweep_interval = 1\n[schedulers.boefje]\ndispatch_timeout = 2\n"
    return write_daemon_config(
        tmp_path,
        kat,
        AMQP_URL,
        port=port,
        mutations=mutations,
        raw_files=f"{mutations}_raw",
        octopoes=False,
        tail=tail,
    )


def reference(n: int) -> str:
    return f"Hostname|internet|h{n}.example"


def stored(tmp_path: Path) -> dict[str, str]:
    """input_ooi → status of every boefje task in the database, read while the daemon may be running."""
    engine = build_engine(f"sqlite:///{tmp_path / 'katsched.db'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(tasks.c.data, tasks.c.status, tasks.c.id))
            return {row.data.get("input_ooi") or str(row.id): row.status for row in rows}
    finally:
        engine.dispose()


class Pusher:
    """Pushes manual tasks over HTTP until told to stop or the API goes away; remembers every accepted one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-pusher", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            ooi = f"Hostname|internet|pushed-{uuid.uuid4().hex[:8]}.example"
            data = {"boefje": {"id": "dns-records"}, "input_ooi": ooi, "organization": "acme"}
            try:
                http_json(
                    f"http://127.0.0.1:{self.port}/schedulers/boefje/push",
                    {"priority": 1, "organisation": "acme", "data": data},
                )
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return
            self.accepted.append(ooi)


def test_sigterm_under_load_drains_within_the_bound_and_loses_nothing(
    tmp_path: Path, kat: KatFakeServer, broker: Broker, mutations: str
) -> None:
    port = free_port()
    broker.publish(mutations, *(sample_mutation("acme", reference(n), 2) for n in range(MESSAGES)))
    daemon = DaemonProcess(config(tmp_path, kat, mutations, port), tmp_path)
    pusher = Pusher(port)
    try:
        daemon.wait_for("daemon_ready")
        pusher.thread.start()
        wait_until(lambda: len(stored(tmp_path)) > 200, "the daemon is busy")
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=DRAIN_TIMEOUT + 10) == 0
        assert time.monotonic() - started < DRAIN_TIMEOUT + 5
    finally:
        pusher.stop.set()
        daemon.kill()
    pusher.thread.join(10)

    in_store = stored(tmp_path)
    left = {body for _headers, body in broker.take_all(mutations)}
    still_queued = {n for n in range(MESSAGES) if sample_mutation("acme", reference(n), 2) in left}
    missing = [n for n in range(MESSAGES) if reference(n) not in in_store and n not in still_queued]
    assert missing == [], f"{len(missing)} messages neither planned nor left in the queue"
    assert len(in_store) < MESSAGES + len(pusher.accepted), (
        "the test stopped the daemon too late to mean much"
    )
    assert [ooi for ooi in pusher.accepted if ooi not in in_store] == []
    assert "daemon_stopped clean=true exit=0" in daemon.log()


def test_kill_9_loses_no_committed_task_and_the_next_start_carries_on(
    tmp_path: Path, kat: KatFakeServer, broker: Broker, mutations: str
) -> None:
    port = free_port()
    path = config(tmp_path, kat, mutations, port)
    broker.publish(mutations, *(sample_mutation("acme", reference(n), 2) for n in range(MESSAGES)))
    first = DaemonProcess(path, tmp_path)
    pusher = Pusher(port)
    try:
        first.wait_for("daemon_ready")
        pusher.thread.start()
        wait_until(lambda: len(stored(tmp_path)) > 200, "the daemon is busy")
        popped = http_json(f"http://127.0.0.1:{port}/schedulers/boefje/pop?limit=5", {})["results"]
        assert len(popped) == 5
        committed = stored(tmp_path)
        first.process.kill()
        first.wait()
    finally:
        pusher.stop.set()
        first.kill()
    pusher.thread.join(10)

    after_crash = stored(tmp_path)
    assert set(committed) <= set(after_crash)
    assert [ooi for ooi in pusher.accepted if ooi not in after_crash] == []

    second = DaemonProcess(path, tmp_path)
    try:
        second.wait_for("daemon_ready")
        everything = {reference(n) for n in range(MESSAGES)}
        wait_until(lambda: everything <= set(stored(tmp_path)), "the next start has planned every message")
        ids = {task["data"]["input_ooi"] for task in popped}
        wait_until(
            lambda: all(stored(tmp_path)[ooi] == TaskStatus.QUEUED.value for ooi in ids),
            "the tasks the dead process handed out are queued again once their leases run out",
        )
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
    finally:
        second.kill()
    assert "task_requeued" in second.log()
