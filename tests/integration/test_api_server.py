"""The API served by a real uvicorn on loopback: every route once, the workers' flow end to end, concurrent
runners, and the `katsched api` command."""

import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from katsched.api import ApiServer, create_app
from katsched.clock import SystemClock
from katsched.errors import StartupError
from katsched.store.engine import build_engine
from katsched.store.migrate import upgrade
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore

pytestmark = pytest.mark.integration

IMAGE = "ghcr.io/minvws/openkat/dns-records:latest"
WORKER_FILTER = {
    "filters": [
        {"column": "data", "field": "boefje__id", "operator": "in", "value": ["dns-records"]},
        {"column": "data", "field": "boefje__oci_image", "operator": "in", "value": [IMAGE]},
    ]
}


@dataclass
class Served:
    url: str
    queue: SqlTaskQueue
    server: ApiServer


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    engine = build_engine(f"sqlite:///{tmp_path / 'katsched.db'}")
    upgrade(engine)
    clock = SystemClock()
    queue = SqlTaskQueue(engine, clock)
    server = ApiServer(create_app(queue, SqlScheduleStore(engine, clock), clock), "127.0.0.1", 0)
    server.start()
    yield Served(server.url, queue, server)
    server.stop()
    engine.dispose()


def scan(ooi: str, org: str = "org1", **extra: Any) -> dict[str, Any]:
    """A manual scan as Rocky pushes it."""
    data = {"id": None, "type": "boefje", "boefje": {"id": "dns-records", "oci_image": IMAGE}}
    data |= {"input_ooi": ooi, "organization": org, "deduplication_key": None, **extra}
    return {"scheduler_id": "boefje", "organisation": org, "priority": 1, "data": data}


def test_every_route_answers_over_loopback(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        assert client.get("/").json() is None
        assert client.get("/health").json()["healthy"] is True
        assert "scheduler_qsize" in client.get("/metrics").text
        task = client.post("/schedulers/boefje/push", json=scan("Hostname|internet|a")).json()
        assert [s["qsize"] for s in client.get("/schedulers").json()] == [1, 0, 0]
        assert client.get("/schedulers/boefje").json()["qsize"] == 1
        assert client.get("/queues").json()[0]["size"] == 1
        assert client.get("/tasks", params={"input_ooi": "Hostname|internet|a"}).json()["count"] == 1
        assert client.post("/tasks", json=WORKER_FILTER).json()["count"] == 1
        assert sum(h["total"] for h in client.get("/tasks/stats").json().values()) == 1
        assert client.get(f"/tasks/{task['id']}").json() == task
        assert (
            client.post("/schedulers/boefje/pop", params={"limit": 1}).json()["results"][0]["id"]
            == task["id"]
        )
        assert client.patch(f"/tasks/{task['id']}", json={"status": "running"}).json()["status"] == "running"
        body = {"scheduler_id": "report", "organisation": "org1", "schedule": "0 * * * *"}
        schedule = client.post(
            "/schedules", json={**body, "data": {"report_recipe_id": "r", "organisation_id": "o"}}
        )
        assert schedule.status_code == 201
        schedule_id = schedule.json()["id"]
        assert client.get("/schedules").json()["count"] == 1
        assert client.post("/schedules/search", json={"filters": []}).json()["count"] == 1
        assert client.get(f"/schedules/{schedule_id}").json()["schedule"] == "0 * * * *"
        assert client.patch(f"/schedules/{schedule_id}", json={"enabled": False}).json()["enabled"] is False
        assert client.delete(f"/schedules/{schedule_id}").status_code == 204
        assert client.get("/openapi.json").json()["info"]["title"] == "katsched"


def test_the_workers_flow_end_to_end(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as rocky, httpx.Client(base_url=served.url) as worker:
        other = rocky.post(
            "/schedulers/boefje/push",
            json={**scan("b"), "data": {**scan("b")["data"], "boefje": {"id": "nmap"}}},
        )
        pushed = rocky.post("/schedulers/boefje/push", json=scan("Hostname|internet|example.com"))
        assert (other.status_code, pushed.status_code) == (201, 201)
        task_id = pushed.json()["id"]

        popped = worker.post("/schedulers/boefje/pop", params={"limit": 1}, json=WORKER_FILTER).json()[
            "results"
        ]
        assert [(t["id"], t["status"]) for t in popped] == [(task_id, "dispatched")]
        assert worker.post("/schedulers/boefje/pop", params={"limit": 1}, json=WORKER_FILTER).json() == {
            "results": []
        }

        assert worker.patch(f"/tasks/{task_id}", json={"status": "running"}).json()["status"] == "running"
        assert worker.get(f"/tasks/{task_id}").json()["status"] == "running"
        finished = worker.patch(f"/tasks/{task_id}", json={"status": "completed"})
        assert (finished.status_code, finished.json()["status"]) == (200, "completed")
        assert worker.patch(f"/tasks/{task_id}", json={"status": "running"}).status_code == 409
    statuses = [status for status, _at, _why in served.queue.history(uuid.UUID(task_id))]
    assert statuses == ["queued", "dispatched", "running", "completed"]
    assert served.queue.qsize("boefje") == 1  # the nmap task, which the worker's filter leaves alone


def test_deduplicated_extras_go_back_to_the_queue(served: Served) -> None:
    key = str(uuid.uuid4())
    with httpx.Client(base_url=served.url, timeout=10) as client:
        group = [
            client.post(
                "/schedulers/boefje/push", json=scan("Hostname|internet|x", org=org, deduplication_key=key)
            ).json()
            for org in ("org1", "org2", "org3")
        ]
        batch = client.post("/schedulers/boefje/pop", params={"limit": 3}, json=WORKER_FILTER).json()[
            "results"
        ]
        assert sorted(t["id"] for t in batch) == sorted(t["id"] for t in group)
        main, *extras = batch
        client.patch(f"/tasks/{main['id']}", json={"status": "running"})
        for extra in extras:  # the worker's batch failed for them: back on the queue
            response = client.patch(f"/tasks/{extra['id']}", json={"status": "queued"})
            assert (response.status_code, response.json()["status"]) == (200, "queued")
        assert client.get("/schedulers/boefje").json()["qsize"] == 2
        again = client.post("/schedulers/boefje/pop", params={"limit": 3}).json()["results"]
        assert sorted(t["id"] for t in again) == sorted(t["id"] for t in extras)


def test_concurrent_runners_never_share_a_task_and_lose_none(served: Served) -> None:
    seeded = 300
    per_pusher = 100
    with httpx.Client(base_url=served.url, timeout=30) as client:
        expected = {
            client.post("/schedulers/boefje/push", json=scan(f"seed{i}")).json()["id"] for i in range(seeded)
        }
    pushed: list[list[str]] = [[], []]
    popped: list[list[str]] = [[] for _ in range(8)]
    pushing = threading.Event()
    pushing.set()
    errors: list[str] = []

    def pusher(index: int) -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            for i in range(per_pusher):
                response = client.post("/schedulers/boefje/push", json=scan(f"p{index}-{i}"))
                if response.status_code != 201:
                    errors.append(response.text)
                else:
                    pushed[index].append(response.json()["id"])

    def popper(index: int) -> None:
        rng = random.Random(index)
        empty = 0
        with httpx.Client(base_url=served.url, timeout=30) as client:
            while empty < 3:
                response = client.post("/schedulers/boefje/pop", params={"limit": rng.randint(1, 3)})
                results = response.json()["results"]
                popped[index].extend(task["id"] for task in results)
                assert all(task["status"] == "dispatched" for task in results)
                empty = 0 if results or pushing.is_set() else empty + 1

    poppers = [threading.Thread(target=popper, args=(i,)) for i in range(8)]
    pushers = [threading.Thread(target=pusher, args=(i,)) for i in range(2)]
    for thread in poppers + pushers:
        thread.start()
    for thread in pushers:
        thread.join()
    pushing.clear()
    for thread in poppers:
        thread.join()

    assert errors == []
    expected |= {task_id for ids in pushed for task_id in ids}
    received = [task_id for ids in popped for task_id in ids]
    assert len(expected) == seeded + 2 * per_pusher
    assert len(received) == len(set(received)), "a task was handed out twice"
    assert set(received) == expected, "a task was lost"
    assert served.queue.qsize("boefje") == 0


def test_the_server_binds_at_start_and_stops_cleanly(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    clock = SystemClock()
    app = create_app(SqlTaskQueue(engine, clock), SqlScheduleStore(engine, clock), clock)
    with ApiServer(app, "127.0.0.1", 0) as server:
        assert server.port != 0
        assert httpx.get(f"{server.url}/health").json()["healthy"] is True  # no wait: the socket was bound
        with pytest.raises(StartupError, match=f"^api: cannot listen on 127.0.0.1:{server.port}: address "):
            ApiServer(app, "127.0.0.1", server.port).start()
    assert not server.is_alive()
    assert server.error is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_katsched_api_serves_until_interrupted(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "k.db"}"\n[api]\ntoken = "t0k3n"\n')
    port = free_port()
    command = [sys.executable, "-m", "katsched", "api", "--config", str(config), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):  # bounded: the process imports, migrates, then listens
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("katsched api did not start")
        assert health.json()["healthy"] is True
        assert httpx.get(f"{url}/tasks").status_code == 401
        assert httpx.get(f"{url}/tasks", headers={"Authorization": "Bearer t0k3n"}).json()["count"] == 0
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"listening on http://127.0.0.1:{port}" in err
    assert "t0k3n" not in err
