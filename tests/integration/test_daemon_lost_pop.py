"""At least once for a pop whose answer was lost (issue 11): a real daemon is killed with SIGKILL after it
committed a pop and before its runner read the answer; once the dispatch lease has run out, the sweep the
daemon runs (with the daemon's own settings, on a clock moved past the lease) queues the task again, and the
next daemon hands it out."""

import select
import socket
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from katsched import wiring
from katsched.config import load_settings
from katsched.core.models import TaskStatus
from katsched.schedulers.sweeps import sweep_stalled
from katsched.store.engine import build_engine
from katsched.store.maintenance import SqlHousekeeping
from katsched.store.queue import SqlTaskQueue
from katsched.testing import FakeClock
from tests.integration.test_daemon_lifecycle import DaemonProcess, free_port, http_json, write_config

pytestmark = pytest.mark.integration

DATA = {
    "boefje": {"id": "dns-records"},
    "input_ooi": "Hostname|internet|lost.example",
    "organization": "acme",
}


def send_pop_and_wait_for_the_answer(port: int) -> socket.socket:
    """Send a pop and wait until its answer is on the wire (the claim is committed), without reading it."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(
        f"POST /schedulers/boefje/pop?limit=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    readable, _, _ = select.select([connection], [], [], 10)
    assert readable, "the daemon never answered the pop"
    return connection


def test_a_pop_lost_with_a_killed_daemon_is_queued_again_after_the_dispatch_lease(tmp_path: Path) -> None:
    port = free_port()
    database = f"sqlite:///{tmp_path / 'katsched.db'}"
    config = write_config(
        tmp_path / "config.toml",
        f'[database]\nurl = "{database}"\n[api]\nport = {port}\n[schedulers.boefje]\ndispatch_timeout = 60\n',
    )
    first = DaemonProcess(config, tmp_path)
    try:
        first.wait_for("daemon_ready")
        pushed = http_json(
            f"http://127.0.0.1:{port}/schedulers/boefje/push",
            {"organisation": "acme", "priority": 1, "data": DATA},
        )
        runner = send_pop_and_wait_for_the_answer(port)
        first.process.kill()  # SIGKILL: the answer dies with the daemon, unread
        first.process.wait(10)
        runner.close()
    finally:
        first.kill()

    engine = build_engine(database)
    try:
        clock = FakeClock()
        queue = SqlTaskQueue(engine, clock)
        task_id = pushed["id"]
        lost = queue.get(uuid.UUID(task_id))
        assert lost.status is TaskStatus.DISPATCHED
        clock.set(lost.modified_at + timedelta(seconds=30))  # within the lease: left alone
        timeouts = wiring.lease_timeouts(load_settings(config))
        assert sweep_stalled(SqlHousekeeping(engine), clock, timeouts).total == 0
        clock.set(lost.modified_at + timedelta(seconds=61))
        summary = sweep_stalled(SqlHousekeeping(engine), clock, timeouts)
        assert summary.requeued["boefje"] == [lost.id]
        assert queue.get(lost.id).status is TaskStatus.QUEUED
        assert queue.history(lost.id)[-1][2] == "dispatch_lease_expired requeued attempt=1 max_attempts=3"
    finally:
        engine.dispose()

    second = DaemonProcess(config, tmp_path)
    try:
        second.wait_for("daemon_ready")
        popped = http_json(f"http://127.0.0.1:{port}/schedulers/boefje/pop?limit=1", {})["results"]
        assert [(task["id"], task["status"]) for task in popped] == [(task_id, "dispatched")]
    finally:
        second.kill()
