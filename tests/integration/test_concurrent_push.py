"""Four processes pushing the same 100 identities at once queue exactly 100 tasks (issue 10): the unique
index of migration 0012 and the push's `ON CONFLICT`, on a SQLite file and on PostgreSQL, through the single
push and the batch push, under a policy that refuses duplicates and one that replaces them."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from katsched.store.engine import build_engine, read
from katsched.store.tables import tasks

pytestmark = pytest.mark.integration

PUSHERS = 4
IDENTITIES = 100
START = 120.0  # four interpreters importing the store at once on a shared two-core machine

# argv: url, go file, "single" or "batch", "refuse" or "replace". Prints each push's result and task id.
PUSHER = """
import json, sys, time
from pathlib import Path
from katsched.clock import SystemClock
from katsched.core.models import PushPolicy
from katsched.core.ports import TaskDraft
from katsched.errors import NotAllowed
from katsched.store.engine import build_engine
from katsched.store.queue import SqlTaskQueue

url, go, path, policy = sys.argv[1:5]
policies = {"boefje": PushPolicy(allow_replace=policy == "replace")}
queue = SqlTaskQueue(build_engine(url), SystemClock(), policies)
queue.ping()
def data(i):
    return {"boefje": {"id": "dns-records"}, "input_ooi": f"o{i}", "organization": "org1"}
drafts = [TaskDraft("boefje", "org1", 5, data(i)) for i in range(int(sys.argv[5]))]
deadline = time.monotonic() + 120
while not Path(go).exists() and time.monotonic() < deadline:  # a start line for all pushers
    time.sleep(0.005)
results = []
if path == "single":
    for draft in drafts:
        try:
            results.append(["pushed", str(queue.push(draft).id)])
        except NotAllowed as refused:
            results.append(["already_queued", str(refused.twin_id)])
else:
    for start in range(0, len(drafts), 10):
        for outcome in queue.push_many(drafts[start:start + 10]):
            task = outcome.task.id if outcome.task is not None else outcome.twin_id
            results.append([outcome.result.value, str(task)])
print(json.dumps(results))
"""


def push_together(url: str, go: Path, policy: str) -> list[list[str]]:
    paths = ["single", "batch"] * (PUSHERS // 2)
    pushers = [
        subprocess.Popen(
            [sys.executable, "-c", PUSHER, url, str(go), path, policy, str(IDENTITIES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in paths
    ]
    go.touch()
    outputs = [pusher.communicate(timeout=START) for pusher in pushers]
    assert [pusher.returncode for pusher in pushers] == [0] * PUSHERS, [err for _, err in outputs]
    return [result for out, _ in outputs for result in json.loads(out)]


def queued_ids(url: str) -> Counter[str]:
    engine = build_engine(url)
    try:
        statement = select(tasks.c.id, tasks.c.hash, tasks.c.data).where(tasks.c.status == "queued")
        with read(engine) as connection:
            rows = connection.execute(statement).all()
            total = connection.execute(select(func.count()).select_from(tasks)).scalar_one()
    finally:
        engine.dispose()
    assert total == len(rows), "only queued tasks were ever written"
    assert len({row.hash for row in rows}) == len(rows), "two queued tasks share an identity"
    assert all(row.data["id"] == str(row.id) for row in rows), "a task's data.id is its id"
    return Counter(str(row.id) for row in rows)


def test_concurrent_pushers_refused_by_policy_queue_each_identity_once(
    any_database_url: str, tmp_path: Path
) -> None:
    results = push_together(any_database_url, tmp_path / "go", "refuse")
    queued = queued_ids(any_database_url)
    assert len(queued) == IDENTITIES
    outcomes = Counter(result for result, _ in results)
    assert outcomes == {"pushed": IDENTITIES, "already_queued": (PUSHERS - 1) * IDENTITIES}
    assert {task_id for _, task_id in results} == set(queued), "every refusal names the queued twin"


def test_concurrent_pushers_allowed_to_replace_all_succeed_on_one_task_per_identity(
    any_database_url: str, tmp_path: Path
) -> None:
    results = push_together(any_database_url, tmp_path / "go", "replace")
    queued = queued_ids(any_database_url)
    assert len(queued) == IDENTITIES
    assert Counter(result for result, _ in results) == {"pushed": PUSHERS * IDENTITIES}
    assert {task_id for _, task_id in results} == set(queued), "a replacement keeps the queued task's id"
