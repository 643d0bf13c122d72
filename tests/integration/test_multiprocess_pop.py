"""Several processes popping from one SQLite file never receive the same task and lose none."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import insert

from katsched.store.engine import build_engine, write
from katsched.store.migrate import upgrade
from katsched.store.queue import SqlTaskQueue
from katsched.store.tables import tasks
from katsched.testing import FakeClock
from tests.integration.support import queued_boefje_rows

pytestmark = pytest.mark.integration

TASKS = 4000
POPPERS = 4

POPPER = """
import json, random, sys
from katsched.clock import SystemClock
from katsched.store.engine import build_engine
from katsched.store.queue import SqlTaskQueue

queue = SqlTaskQueue(build_engine(sys.argv[1]), SystemClock())
seen, empty = [], 0
while empty < 3:
    popped = queue.pop("boefje", limit=random.randint(1, 8))
    empty = 0 if popped else empty + 1
    seen.extend(str(task.id) for task in popped)
print(json.dumps(seen))
"""

PUSHER = """
import sys
from katsched.clock import SystemClock
from katsched.store.engine import build_engine
from katsched.core.ports import TaskDraft
from katsched.store.queue import SqlTaskQueue

queue = SqlTaskQueue(build_engine(sys.argv[1]), SystemClock())
for i in range(int(sys.argv[2])):
    data = {"boefje": {"id": "late"}, "input_ooi": f"o{i}", "organization": "org2"}
    queue.push(TaskDraft("boefje", "org2", 5, data))
"""


def seed(url: str, clock: FakeClock) -> None:
    engine = build_engine(url)
    upgrade(engine)
    rows = queued_boefje_rows(TASKS, clock.now())
    with write(engine) as connection:
        connection.execute(insert(tasks), rows)
    engine.dispose()


def test_concurrent_poppers_share_the_queue_without_overlap_or_loss(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    seed(url, clock)
    late = 500
    pusher = subprocess.Popen([sys.executable, "-c", PUSHER, url, str(late)])
    poppers = [
        subprocess.Popen([sys.executable, "-c", POPPER, url], stdout=subprocess.PIPE, text=True)
        for _ in range(POPPERS)
    ]
    outputs = [popper.communicate(timeout=300)[0] for popper in poppers]
    assert pusher.wait(timeout=300) == 0
    assert all(popper.returncode == 0 for popper in poppers)
    per_process = [json.loads(output) for output in outputs]
    remainder = SqlTaskQueue(build_engine(url), clock).pop("boefje", limit=TASKS + late)
    popped = [task_id for ids in per_process for task_id in ids] + [str(task.id) for task in remainder]
    assert len(popped) == len(set(popped)), "a task was handed out twice"
    assert len(popped) == TASKS + late, "a task was lost"
    assert sum(1 for ids in per_process if ids) >= 2, "the processes did not actually share the work"
