"""SIGTERM during a stream: a process that consumes, as the daemon does, is told to stop half-way. Nothing it
acknowledged is lost, and what it did not acknowledge is delivered to the next run."""

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from katsched.intake import QueueConsumer
from tests.integration.test_intake_publish import AMQP_URL, Broker, running, scratch_queue, wait_until

pytestmark = [pytest.mark.amqp, pytest.mark.integration]

MESSAGES = 2000
ROOT = Path(__file__).resolve().parents[2]


class SqliteTasks:
    """A task table keyed by hash, shared by processes: the store the child commits to before it acks."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS tasks (hash TEXT PRIMARY KEY, commits INTEGER NOT NULL)")

    def commit(self, body: bytes) -> None:
        key = f"task-{json.loads(body)['n']}"
        with self._lock:
            self._db.execute(
                "INSERT INTO tasks VALUES (?, 1) ON CONFLICT (hash) DO UPDATE SET commits = commits + 1",
                (key,),
            )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM tasks").fetchone()[0])

    def commits(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT coalesce(sum(commits), 0) FROM tasks").fetchone()[0])


def child_main() -> None:
    """The child process: consume until SIGTERM, then stop as the daemon does and print the stats."""
    url, queue, path = sys.argv[1:4]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tasks = SqliteTasks(Path(path))

    def handle(body: bytes) -> None:
        time.sleep(0.005)  # some planning work, so that the stream is still flowing when SIGTERM comes
        tasks.commit(body)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    consumer = QueueConsumer(url, queue, handle, prefetch=20, workers=4)
    consumer.start()
    stop.wait()
    consumer.stop(timeout=10)
    print(json.dumps(consumer.stats.__dict__), flush=True)


@pytest.fixture
def queue_name(broker: Broker) -> Iterator[str]:
    yield from scratch_queue(broker)


def test_sigterm_loses_no_acknowledged_message_and_the_rest_is_redelivered(
    broker: Broker, queue_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.db"
    tasks = SqliteTasks(path)
    broker.publish(queue_name, *(json.dumps({"n": n}).encode() for n in range(MESSAGES)))
    code = "from tests.integration.test_intake_sigterm import child_main; child_main()"
    child = subprocess.Popen(
        [sys.executable, "-c", code, AMQP_URL, queue_name, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: tasks.count() >= MESSAGES // 10, "the child has processed a tenth of the stream")
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, stderr
    assert "consumer_drained" in stderr
    acked = json.loads(stdout)["acked"]
    left = broker.ready(queue_name)
    assert acked < MESSAGES, "SIGTERM came after the end of the stream; nothing was tested"
    assert acked + left == MESSAGES  # every message was either acknowledged or is back in the queue
    assert tasks.count() == acked  # what was acknowledged was committed, and the in-flight work was finished

    with running(QueueConsumer(AMQP_URL, queue_name, tasks.commit)) as consumer:
        wait_until(lambda: tasks.count() == MESSAGES, "the next run has processed the rest")
        assert consumer.stats.consumed == left
    assert tasks.commits() == MESSAGES  # each message became its task exactly once
