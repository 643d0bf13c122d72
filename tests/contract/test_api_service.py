"""`/health`, `/metrics`, the bearer token, the body limit, error bodies and the OpenAPI document."""

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from katsched.api import create_app
from katsched.store.engine import build_engine
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.store.turns import TurnLock
from katsched.testing import FakeClock
from tests.contract import api_support
from tests.contract.api_support import (
    Api,
    MakeApi,
    boefje_data,
    push,
    report_data,
)

api, make_api = api_support.api, api_support.make_api  # the fixtures


@pytest.fixture
def broken_database(tmp_path: Path) -> Iterator[Engine]:
    """An engine whose database file is a directory: every statement fails as an unreachable database."""
    (tmp_path / "db").mkdir()
    engine = build_engine(f"sqlite:///{tmp_path / 'db'}")
    yield engine
    engine.dispose()


def broken_client(engine: Engine) -> TestClient:
    clock = FakeClock()
    return TestClient(
        create_app(SqlTaskQueue(engine, clock), SqlScheduleStore(engine, clock), clock, version="1")
    )


# /health


def test_health_reports_the_database_and_each_service(make_api: MakeApi) -> None:
    def raises() -> bool:
        raise RuntimeError("no route to host")

    api = make_api(health_checks={"katalogus": lambda: True, "bytes": lambda: False, "octopoes": raises})
    body = api.client.get("/health").json()
    assert (body["service"], body["healthy"], body["version"], body["externals"]) == (
        "scheduler",
        True,
        "9.9.9",
        {},
    )
    assert [(r["service"], r["healthy"]) for r in body["results"]] == [
        ("database", True),
        ("katalogus", True),
        ("bytes", False),
        ("octopoes", False),
    ]
    externals = api.client.get("/health", params={"externals": True}).json()["externals"]
    assert externals == {"katalogus": True, "bytes": False, "octopoes": False}


def test_health_is_unhealthy_without_the_database(broken_database: Engine) -> None:
    with broken_client(broken_database) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["healthy"] is False
    assert response.json()["results"][0] == {
        "service": "database",
        "healthy": False,
        "version": None,
        "additional": None,
        "results": [],
        "externals": {},
    }


def test_an_unreachable_database_is_503_json(broken_database: Engine) -> None:
    with broken_client(broken_database) as client:
        response = client.get("/tasks")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"].startswith("A database error occurred: database error: ")


def test_an_unexpected_error_is_500_json(make_api: MakeApi) -> None:
    api = make_api(raise_server_exceptions=False)

    def explode(_: uuid.UUID) -> None:
        raise RuntimeError("a bug")

    api.queue.get = explode  # type: ignore[method-assign, assignment]
    response = api.client.get(f"/tasks/{uuid.uuid4()}")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}


# /metrics


def families(api: Api) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def test_metrics_count_tasks_per_scheduler_and_organisation(api: Api) -> None:
    push(api, boefje_data("a"))
    push(api, boefje_data("b", org="org2"), org="org2")
    push(api, boefje_data("c", org="org2"), org="org2")
    push(api, report_data(), scheduler="report")
    api.client.post("/schedulers/boefje/pop")
    found = families(api)
    assert ({"scheduler_id": "boefje"}, 2.0) in found["scheduler_qsize"]
    assert ({"scheduler_id": "normalizer"}, 0.0) in found["scheduler_qsize"]
    assert ({"scheduler_id": "boefje", "status": "dispatched"}, 1.0) in found["scheduler_task_status_counts"]
    assert ({"scheduler_id": "report", "status": "completed"}, 0.0) in found["scheduler_task_status_counts"]
    by_org = {
        (lab["scheduler_id"], lab["organisation"]): value
        for lab, value in found["scheduler_organisation_qsize"]
    }
    assert by_org == {("boefje", "org1"): 0.0, ("boefje", "org2"): 2.0, ("report", "org1"): 1.0}
    statuses = found["scheduler_organisation_task_status_counts"]
    assert ({"scheduler_id": "boefje", "organisation": "org1", "status": "dispatched"}, 1.0) in statuses
    assert found["scheduler_database_up"] == [({}, 1.0)]


def test_metrics_count_pushes_pops_and_latencies(api: Api) -> None:
    push(api, boefje_data("a"))
    push(api, boefje_data("b"))
    api.client.post(
        "/schedulers/boefje/push", json={"organisation": "org1", "priority": 1, "data": boefje_data("a")}
    )
    api.client.post("/schedulers/boefje/pop", params={"limit": 5})
    api.client.post("/schedulers/boefje/pop")
    found = families(api)
    assert ({"scheduler_id": "boefje"}, 2.0) in found["scheduler_tasks_pushed"]
    assert ({"scheduler_id": "boefje", "reason": "conflict"}, 1.0) in found["scheduler_pushes_refused"]
    assert ({"scheduler_id": "boefje"}, 2.0) in found["scheduler_tasks_popped"]
    assert ({"scheduler_id": "boefje"}, 2.0) in found["scheduler_pops"]
    latency = found["scheduler_http_request_duration_seconds"]
    pop_count = {"method": "POST", "route": "/schedulers/{scheduler_id}/pop", "status": "200"}
    assert (pop_count, 2.0) in [(labels, value) for labels, value in latency if "le" not in labels]
    assert found["katsched_info"] == [({"version": "9.9.9"}, 1.0)]


def test_metrics_without_a_database_say_so(broken_database: Engine) -> None:
    with broken_client(broken_database) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "scheduler_database_up 0.0" in response.text


# security


def test_a_token_protects_every_route_but_health(make_api: MakeApi) -> None:
    api = make_api(token="s3cret")
    protected = [("GET", "/"), ("GET", "/tasks"), ("POST", "/schedulers/boefje/pop"), ("GET", "/metrics"),
                 ("GET", "/openapi.json"), ("GET", "/nowhere")]  # fmt: skip
    for method, path in protected:
        response = api.client.request(method, path)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Not authenticated"}
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.client.get("/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.client.get("/tasks", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert api.client.get("/health").status_code == 200


def test_the_document_declares_the_token(make_api: MakeApi) -> None:
    document = (
        make_api(token="s3cret")
        .client.get("/openapi.json", headers={"Authorization": "Bearer s3cret"})
        .json()
    )
    assert document["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_a_body_over_the_limit_is_413(make_api: MakeApi) -> None:
    api = make_api(max_body_bytes=1000)
    big = {"organisation": "org1", "priority": 1, "data": boefje_data("x" * 2000)}
    response = api.client.post("/schedulers/boefje/push", json=big)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 1000 bytes)"}
    assert api.queue.qsize("boefje") == 0

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"filters": ['
        for _ in range(100):
            yield b'{"column": "organisation", "operator": "==", "value": "org1"},'
        yield b"]}"

    chunked = api.client.post("/tasks", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert chunked.json() == {"detail": "Request body too large (limit 1000 bytes)"}
    assert api.client.post("/tasks", json={"filters": []}).status_code == 200


# the document


def test_the_document_describes_every_route(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("/", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/schedulers", "get"),
        ("/schedulers/{scheduler_id}", "get"),
        ("/schedulers/{scheduler_id}/push", "post"),
        ("/schedulers/{scheduler_id}/pop", "post"),
        ("/queues", "get"),
        ("/tasks", "get"),
        ("/tasks", "post"),
        ("/tasks/stats", "get"),
        ("/tasks/{task_id}", "get"),
        ("/tasks/{task_id}", "patch"),
        ("/schedules", "get"),
        ("/schedules", "post"),
        ("/schedules/search", "post"),
        ("/schedules/{schedule_id}", "get"),
        ("/schedules/{schedule_id}", "patch"),
        ("/schedules/{schedule_id}", "delete"),
        ("/explain", "get"),
    }
    schemas = document["components"]["schemas"]
    assert {"Task", "Schedule", "TaskPush", "FilterRequest", "Filter", "FilterGroup", "ErrorDetail"} <= set(
        schemas
    )
    pop = document["paths"]["/schedulers/{scheduler_id}/pop"]["post"]
    assert pop["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FilterRequest"
    }
    assert {"200", "400", "404", "422"} <= set(pop["responses"])
    push_doc = document["paths"]["/schedulers/{scheduler_id}/push"]["post"]
    assert {"201", "400", "404", "409", "422", "429"} <= set(push_doc["responses"])
    assert "==" in schemas["Filter"]["properties"]["operator"]["enum"]


# values the database cannot hold


def test_an_integer_beyond_64_bits_in_a_filter_is_400(api: Api) -> None:
    body = {"filters": [{"column": "priority", "operator": "==", "value": 2**70}]}
    response = api.client.post("/tasks", json=body)
    assert response.status_code == 400
    reason = f"document.filters[0].value: {2**70} is out of range (64-bit integers only)"
    assert response.json() == {"detail": f"Invalid filter(s): {reason}"}


def test_a_nul_character_is_refused_where_the_database_cannot_store_it(api: Api, engine: Engine) -> None:
    body = {"organisation": "org\x00", "priority": 1, "data": boefje_data()}
    response = api.client.post("/schedulers/boefje/push", json=body)
    listing = api.client.get("/tasks", params={"organisation": "org\x00"})
    if engine.dialect.name == "postgresql":
        assert response.status_code == listing.status_code == 400
        assert "NUL" in response.json()["detail"]
    else:  # SQLite stores it like any other character
        assert (response.status_code, listing.json()["count"]) == (201, 1)


# writers take turns (SQLite)


def test_writers_are_served_in_arrival_order() -> None:
    turns = TurnLock()
    served: list[int] = []
    threads = []
    with turns:  # held while five writers queue up, one after another
        for number in range(5):
            thread = threading.Thread(target=lambda n=number: _write(turns, served, n))
            thread.start()
            threads.append(thread)
            deadline = time.monotonic() + 10
            while len(turns._waiting) <= number and time.monotonic() < deadline:
                pass  # until this writer is queued (bounded)
    for thread in threads:
        thread.join(timeout=10)
    assert served == [0, 1, 2, 3, 4]
    with turns:  # free again once everyone has had a turn
        assert turns._held


def _write(turns: TurnLock, served: list[int], number: int) -> None:
    with turns:
        served.append(number)


def test_explain_without_the_planners_is_503(api: Api) -> None:
    response = api.client.get("/explain", params={"organisation": "org1", "ooi": "Hostname|internet|x"})
    assert response.status_code == 503
    assert response.json() == {
        "detail": "A service is unavailable: explain needs the planners, and this API was built without them"
    }


def test_a_service_not_probed_yet_is_unknown_not_down(make_api: MakeApi) -> None:
    api = make_api(health_checks={"katalogus": lambda: None, "bytes": lambda: False})
    body = api.client.get("/health", params={"externals": True}).json()
    services = {r["service"]: (r["healthy"], r["additional"]) for r in body["results"]}
    assert services["katalogus"] == (True, {"state": "unknown"})
    assert services["bytes"] == (False, {"state": "down"})
    assert body["healthy"] is True  # the database is up and there is no consumer
    assert body["externals"] == {"katalogus": True, "bytes": False}


@pytest.mark.parametrize(
    ("states", "healthy"),
    [
        ({"mutations": "connected", "raw": "connecting"}, True),
        ({"mutations": "connected", "raw": "misconfigured"}, False),
        ({"mutations": "disconnected", "raw": "connected"}, False),
    ],
)
def test_health_includes_each_consumer_and_is_false_while_one_is_broken(
    engine: Engine, clock: FakeClock, states: dict[str, str], healthy: bool
) -> None:
    app = create_app(
        SqlTaskQueue(engine, clock), SqlScheduleStore(engine, clock), clock, intake_states=lambda: states
    )
    with TestClient(app) as client:
        body = client.get("/health").json()
    assert body["healthy"] is healthy
    consumers = [(r["service"], r["healthy"], r["additional"]) for r in body["results"][1:]]
    broken = {"misconfigured", "disconnected"}
    assert consumers == [
        (f"intake:{queue}", state not in broken, {"state": state}) for queue, state in states.items()
    ]
