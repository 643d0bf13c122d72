"""`/`, `/schedulers…` (list, get, push, pop) and `/queues`: every case of reference §2.4 to §2.7 and §10.1,
with the fixes of SPEC §4, on a real SQLite file and on PostgreSQL."""

import uuid
from datetime import timedelta

import pytest

from katsched.core.models import PushPolicy
from tests.contract import api_support
from tests.contract.api_support import (
    Api,
    MakeApi,
    boefje_data,
    normalizer_data,
    push,
    push_body,
    report_data,
)

api, make_api = api_support.api, api_support.make_api  # the fixtures

CONFLICT = "Conflict error occurred: queue is not allowed to push items"


def test_root_answers_null(api: Api) -> None:
    response = api.client.get("/")
    assert response.status_code == 200
    assert response.json() is None


def test_schedulers_are_listed_in_order_with_their_queue_sizes(api: Api) -> None:
    push(api, boefje_data())
    response = api.client.get("/schedulers")
    assert response.status_code == 200
    assert [(s["id"], s["type"], s["item_type"], s["qsize"]) for s in response.json()] == [
        ("boefje", "boefje", "BoefjeTask", 1),
        ("normalizer", "normalizer", "NormalizerTask", 0),
        ("report", "report", "ReportTask", 0),
    ]
    assert response.json()[0]["last_activity"] == "2026-11-28T12:00:00Z"
    assert response.json()[1]["last_activity"] is None


def test_one_scheduler(api: Api) -> None:
    response = api.client.get("/schedulers/normalizer")
    assert response.status_code == 200
    assert response.json() == {
        "id": "normalizer",
        "type": "normalizer",
        "item_type": "NormalizerTask",
        "qsize": 0,
        "last_activity": None,
    }


def test_unknown_scheduler_is_404(api: Api) -> None:
    response = api.client.get("/schedulers/123.123")
    assert response.status_code == 404
    assert response.json() == {"detail": "Resource not found: Scheduler 123.123 not found"}


# push


def test_push_queues_the_task_as_the_original_answers_it(api: Api) -> None:
    body = push(api, boefje_data())
    assert body["status"] == "queued"
    assert body["scheduler_id"] == "boefje"
    assert body["type"] == "boefje"
    assert body["priority"] == 1
    assert body["hash"] == "74956880324db1838156e1ebf7847448"
    assert body["data"]["id"] == body["id"]
    assert body["created_at"] == body["modified_at"] == "2026-11-28T12:00:00Z"
    assert api.client.get(f"/tasks/{body['id']}").json() == body
    assert api.queue.qsize("boefje") == 1


def test_push_of_each_payload_type(api: Api) -> None:
    normalizer = push(api, normalizer_data(), scheduler="normalizer")
    assert normalizer["data"]["id"] == normalizer["id"]
    report = push(api, report_data(), scheduler="report")
    assert report["hash"] == "e2805bbc0ac29935b53a88d3ea52984e"
    assert "id" not in report["data"]


def test_push_fills_the_task_id_and_data_id_from_each_other(api: Api) -> None:
    given = uuid.uuid4()
    assert push(api, boefje_data(ooi="a"), id=str(given))["data"]["id"] == str(given)
    other = uuid.uuid4()
    assert push(api, boefje_data(ooi="b", id=str(other)))["id"] == str(other)


def test_push_with_conflicting_ids_is_400(api: Api) -> None:
    body = push_body(boefje_data(id=str(uuid.uuid4())), id=str(uuid.uuid4()))
    response = api.client.post("/schedulers/boefje/push", json=body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Bad request error occurred: malformed item: id ")


def test_push_with_an_unknown_key_is_422(api: Api) -> None:
    response = api.client.post("/schedulers/boefje/push", json=push_body(boefje_data(), bogus=1))
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "Extra inputs are not permitted"


def test_a_whole_task_document_is_accepted_and_its_read_only_fields_ignored(api: Api) -> None:
    document = {
        "id": str(uuid.uuid4()),
        "scheduler_id": "boefje",
        "schedule_id": str(uuid.uuid4()),
        "organisation": "org1",
        "priority": 7,
        "status": "completed",
        "type": "normalizer",
        "hash": "0" * 32,
        "data": boefje_data(),
        "created_at": "2020-01-01T00:00:00Z",
        "modified_at": "2020-01-01T00:00:00Z",
    }
    body = api.client.post("/schedulers/boefje/push", json=document).json()
    assert (body["id"], body["status"], body["type"]) == (document["id"], "queued", "boefje")
    assert (body["hash"], body["schedule_id"]) == ("74956880324db1838156e1ebf7847448", None)
    assert body["created_at"] == "2026-11-28T12:00:00Z"


def test_a_runner_pushing_back_a_popped_task_requeues_that_task(api: Api) -> None:
    pushed = push(api, boefje_data())
    api.clock.advance(timedelta(seconds=3))
    popped = api.client.post("/schedulers/boefje/pop").json()["results"][0]
    api.clock.advance(timedelta(seconds=3))
    response = api.client.post("/schedulers/boefje/push", json=popped)  # the worker's shutdown re-push
    assert response.status_code == 201
    assert response.json()["id"] == pushed["id"]
    assert response.json()["status"] == "queued"
    assert response.json()["modified_at"] == "2026-11-28T12:00:06Z"
    assert api.queue.qsize("boefje") == 1
    assert [status for status, _at, _why in api.queue.history(uuid.UUID(pushed["id"]))] == [
        "queued",
        "dispatched",
        "queued",
    ]


def test_pushing_the_id_of_a_finished_task_is_a_conflict(api: Api) -> None:
    pushed = push(api, boefje_data())
    api.client.post("/schedulers/boefje/pop")
    api.client.patch(f"/tasks/{pushed['id']}", json={"status": "completed"})
    response = api.client.post("/schedulers/boefje/push", json=pushed)
    assert response.status_code == 409
    assert response.headers["retry-after"] == "60"
    assert (
        response.json()["detail"] == f"Conflict error occurred: a task with id {pushed['id']} already exists"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"organisation": "org1", "data": {}},
        push_body(boefje_data(), priority=0),
        push_body(boefje_data(), priority=None),
        push_body(report_data()),
        push_body({"boefje": {"id": "x"}}),
    ],
    ids=["empty-data", "priority-0", "no-priority", "wrong-type", "no-organization"],
)
def test_a_malformed_item_is_400(api: Api, body: dict[str, object]) -> None:
    response = api.client.post("/schedulers/boefje/push", json=body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Bad request error occurred: malformed item: ")
    assert api.queue.qsize("boefje") == 0


def test_push_with_another_scheduler_id_is_400(api: Api) -> None:
    response = api.client.post(
        "/schedulers/boefje/push", json=push_body(boefje_data(), scheduler_id="report")
    )
    assert response.status_code == 400
    mismatch = "scheduler_id in item does not match the scheduler_id in the path"
    assert response.json() == {"detail": f"Bad request error occurred: {mismatch}"}


def test_push_to_an_unknown_scheduler_is_404(api: Api) -> None:
    response = api.client.post("/schedulers/nope/push", json=push_body(boefje_data()))
    assert response.status_code == 404
    assert response.json() == {"detail": "Resource not found: Scheduler nope not found"}


def test_a_full_queue_refuses_with_429_except_manual_priorities(make_api: MakeApi) -> None:
    api = make_api({"boefje": PushPolicy(maxsize=1)})
    push(api, boefje_data(ooi="a"))
    response = api.client.post("/schedulers/boefje/push", json=push_body(boefje_data(ooi="b"), priority=2))
    assert response.status_code == 429
    assert response.json() == {"detail": "Too many requests"}
    assert api.queue.qsize("boefje") == 1
    push(api, boefje_data(ooi="c"), priority=1)
    assert api.queue.qsize("boefje") == 2


def test_a_queued_duplicate_is_a_conflict_with_retry_after(api: Api) -> None:
    push(api, boefje_data())
    response = api.client.post("/schedulers/boefje/push", json=push_body(boefje_data(), priority=2))
    assert response.status_code == 409
    assert response.headers["retry-after"] == "60"
    assert response.json() == {"detail": CONFLICT}


@pytest.mark.parametrize(
    ("policy", "second"),
    [
        (PushPolicy(allow_replace=True), push_body(boefje_data())),
        (PushPolicy(allow_updates=True), push_body(boefje_data(deduplication_key=str(uuid.UUID(int=5))))),
        (PushPolicy(allow_priority_updates=True), push_body(boefje_data(), priority=2)),
    ],
    ids=["replace", "updates", "priority-updates"],
)
def test_the_push_policy_updates_the_queued_task(make_api: MakeApi, policy: PushPolicy, second: dict) -> None:
    api = make_api({"boefje": policy})
    first = push(api, boefje_data())
    second["id"] = first["id"]
    second["data"]["id"] = first["id"]
    response = api.client.post("/schedulers/boefje/push", json=second)
    assert response.status_code == 201
    assert response.json()["id"] == first["id"]
    assert response.json()["priority"] == second["priority"]
    assert api.queue.qsize("boefje") == 1


def test_updates_without_the_policy_are_conflicts(make_api: MakeApi) -> None:
    api = make_api({"boefje": PushPolicy(allow_updates=True)})
    first = push(api, boefje_data())
    again = push_body(boefje_data(id=first["id"]), priority=2, id=first["id"])  # same data, new priority
    response = api.client.post("/schedulers/boefje/push", json=again)
    assert response.status_code == 409
    assert response.json() == {"detail": CONFLICT}


# pop


def test_pop_of_an_empty_queue(api: Api) -> None:
    response = api.client.post("/schedulers/report/pop")
    assert response.status_code == 200
    assert response.json() == {"results": []}


def test_pop_returns_the_task_as_dispatched_now(api: Api) -> None:
    pushed = push(api, boefje_data())
    api.clock.advance(timedelta(seconds=30))
    response = api.client.post("/schedulers/boefje/pop")
    [task] = response.json()["results"]
    assert task["id"] == pushed["id"]
    assert task["status"] == "dispatched"
    assert task["modified_at"] == "2026-11-28T12:00:30Z"
    assert api.client.get(f"/tasks/{pushed['id']}").json() == task
    assert api.queue.qsize("boefje") == 0


def test_pop_records_the_runner_without_changing_the_wire(api: Api) -> None:
    pushed = push(api, boefje_data())
    api.clock.advance(timedelta(seconds=30))
    response = api.client.post("/schedulers/boefje/pop", headers={"User-Agent": "boefje-runner/1.2"})
    [task] = response.json()["results"]
    assert set(task) == {
        "id", "scheduler_id", "schedule_id", "organisation", "priority", "status", "type", "hash", "data",
        "created_at", "modified_at",
    }  # fmt: skip
    runner = api.queue.popped_by(uuid.UUID(pushed["id"]))
    assert runner is not None
    assert (runner.address, runner.agent) == ("testclient", "boefje-runner/1.2")
    assert runner.at == api.clock.now()
    assert set(api.client.get(f"/tasks/{pushed['id']}").json()) == set(task)


def test_pop_without_a_limit_hands_out_one_task(api: Api) -> None:
    for name in ("a", "b", "c"):
        push(api, report_data(name), scheduler="report")
    assert len(api.client.post("/schedulers/report/pop").json()["results"]) == 1
    assert api.queue.qsize("report") == 2


def test_pop_with_a_limit_serves_the_best_first(api: Api) -> None:
    low = push(api, report_data("low"), scheduler="report", priority=2)
    high = push(api, report_data("high"), scheduler="report", priority=1)
    results = api.client.post("/schedulers/report/pop", params={"limit": 2}).json()["results"]
    assert [task["id"] for task in results] == [high["id"], low["id"]]
    assert {task["status"] for task in results} == {"dispatched"}


def test_pop_in_pages(api: Api) -> None:
    pushed = [push(api, report_data(f"r{i}"), scheduler="report", priority=i + 1)["id"] for i in range(10)]
    first = api.client.post("/schedulers/report/pop", params={"limit": 5}).json()["results"]
    assert api.queue.qsize("report") == 5
    second = api.client.post("/schedulers/report/pop", params={"limit": 5}).json()["results"]
    assert [task["id"] for task in first + second] == pushed
    assert api.queue.qsize("report") == 0


def test_pop_of_an_unknown_scheduler_is_404(api: Api) -> None:
    response = api.client.post("/schedulers/nope/pop")
    assert response.status_code == 404
    assert response.json() == {"detail": "Resource not found: Scheduler nope not found"}


@pytest.mark.parametrize("limit", [-1, 1001, "x"])
def test_pop_with_a_bad_limit_is_422(api: Api, limit: object) -> None:
    assert api.client.post("/schedulers/boefje/pop", params={"limit": limit}).status_code == 422


def test_pop_with_the_workers_filters(api: Api) -> None:
    image = "ghcr.io/minvws/openkat/dns:1"
    push(api, boefje_data(ooi="a", boefje="nmap"))
    wanted = push(api, {**boefje_data(ooi="b"), "boefje": {"id": "dns-records", "oci_image": image}})
    push(api, boefje_data(ooi="c"))  # right boefje, no image
    filters = {
        "filters": [
            {"column": "data", "field": "boefje__oci_image", "operator": "in", "value": [image]},
            {"column": "data", "field": "boefje__id", "operator": "in", "value": ["dns-records"]},
        ]
    }
    results = api.client.post("/schedulers/boefje/pop", params={"limit": 1}, json=filters).json()["results"]
    assert [task["id"] for task in results] == [wanted["id"]]
    assert api.client.post("/schedulers/boefje/pop", json=filters).json() == {"results": []}
    assert api.queue.qsize("boefje") == 2


def test_pop_filters_on_json_containment(api: Api) -> None:
    first = push(api, report_data("r1", org="org1"), scheduler="report")
    second = push(api, report_data("r2", org="org2"), scheduler="report")
    contains = {"filters": [{"column": "data", "operator": "@>", "value": '{"organisation_id": "org2"}'}]}
    assert [t["id"] for t in api.client.post("/schedulers/report/pop", json=contains).json()["results"]] == [
        second["id"]
    ]
    within = {
        "filters": [{"column": "data", "field": "report_recipe_id", "operator": "<@", "value": '["r1", "x"]'}]
    }
    assert [t["id"] for t in api.client.post("/schedulers/report/pop", json=within).json()["results"]] == [
        first["id"]
    ]


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        ([{"column": "nope", "operator": "==", "value": 1}], 'unknown column "nope"'),
        ([{"column": "organisation", "operator": "xor", "value": 1}], 'unknown operator "xor"'),
        ({"xor": []}, 'unknown key "xor"'),
        ({"not": [{"column": "organisation", "operator": "==", "value": "a"}] * 2}, "exactly one filter"),
        ([{"column": "data", "field": "boefje__id", "operator": "in", "value": "dns"}], "value"),
        (5, "expected a list or an object"),
    ],
)
def test_a_bad_filter_is_400_at_once(api: Api, filters: object, reason: str) -> None:
    push(api, boefje_data())
    response = api.client.post("/schedulers/boefje/pop", json={"filters": filters})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Invalid filter(s): ")
    assert reason in response.json()["detail"]
    assert api.queue.qsize("boefje") == 1


def test_queues_lists_each_queue_with_its_policy(make_api: MakeApi) -> None:
    api = make_api({"normalizer": PushPolicy(maxsize=5, allow_replace=True)})
    push(api, normalizer_data(), scheduler="normalizer")
    response = api.client.get("/queues")
    assert response.status_code == 200
    queues = {queue["id"]: queue for queue in response.json()}
    assert list(queues) == ["boefje", "normalizer", "report"]
    assert queues["normalizer"] == {
        "id": "normalizer",
        "size": 1,
        "maxsize": 5,
        "item_type": "NormalizerTask",
        "allow_replace": True,
        "allow_updates": False,
        "allow_priority_updates": False,
    }
    assert queues["boefje"]["size"] == 0
