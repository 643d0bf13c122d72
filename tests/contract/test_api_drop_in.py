"""What OpenKAT's own components still hit (issue 11): bodies without a Content-Type, the schedules a manual
push creates or moves on (reference §4.4), and a runner repeating a status PATCH. SQLite and PostgreSQL."""

import json
from datetime import timedelta
from typing import Any

import pytest

from katsched.core.models import Organisation, Plugin
from katsched.testing import InMemoryCatalog
from tests.contract import api_support
from tests.contract.api_support import Api, MakeApi, boefje_data, normalizer_data, push, report_data

api, make_api = api_support.api, api_support.make_api  # the fixtures


@pytest.fixture
def catalog() -> InMemoryCatalog:
    catalog = InMemoryCatalog()
    catalog.add_organisation(Organisation(id="org1", name="Org 1"))
    return catalog


def dns_records(**changes: Any) -> Plugin:
    fields: dict[str, Any] = {"id": "dns-records", "type": "boefje", "enabled": True, "scan_level": 1,
                              "consumes": ["Hostname"], "produces": []}  # fmt: skip
    return Plugin(**(fields | changes))


def report_schedule(**fields: str) -> dict[str, Any]:
    return {"scheduler_id": "report", "organisation": "org1", "data": report_data(), **fields}


def raw_push(api: Api, scheduler: str, document: dict[str, Any], **headers: str) -> Any:
    """As the workers' scheduler client does: the JSON as raw content, and no Content-Type."""
    response = api.client.post(f"/schedulers/{scheduler}/push", content=json.dumps(document), headers=headers)
    if not headers:
        assert "content-type" not in response.request.headers
    return response


# bodies whatever their Content-Type


@pytest.mark.parametrize(
    ("scheduler", "data"), [("boefje", boefje_data()), ("normalizer", normalizer_data())]
)
def test_the_workers_shutdown_re_push_without_a_content_type_queues_the_task_again(
    api: Api, scheduler: str, data: dict[str, Any]
) -> None:
    pushed = push(api, data, scheduler)
    [popped] = api.client.post(f"/schedulers/{scheduler}/pop").json()["results"]
    assert popped["id"] == pushed["id"]
    response = raw_push(api, scheduler, popped)  # the whole Task document the worker held
    assert response.status_code == 201, response.text
    assert (response.json()["id"], response.json()["status"]) == (pushed["id"], "queued")
    assert api.queue.qsize(scheduler) == 1


def test_a_new_push_without_a_content_type_is_accepted(api: Api) -> None:
    response = raw_push(api, "boefje", {"organisation": "org1", "priority": 1, "data": boefje_data()})
    assert response.status_code == 201
    assert api.queue.qsize("boefje") == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_every_json_endpoint_reads_json_whatever_the_content_type(api: Api, content_type: str) -> None:
    headers = {"content-type": content_type}
    body = json.dumps({"organisation": "org1", "priority": 1, "data": boefje_data()})
    assert api.client.post("/schedulers/boefje/push", content=body, headers=headers).status_code == 201
    filters = json.dumps({"filters": [{"column": "organisation", "operator": "==", "value": "org1"}]})
    assert api.client.post("/tasks", content=filters, headers=headers).json()["count"] == 1
    schedule = json.dumps({"scheduler_id": "report", "organisation": "org1", "data": report_data(),
                           "schedule": "0 3 * * *"})  # fmt: skip
    assert api.client.post("/schedules", content=schedule, headers=headers).status_code == 201
    assert api.client.post("/schedules/search", content=filters, headers=headers).json()["count"] == 1
    popped = api.client.post("/schedulers/boefje/pop", content=filters, headers=headers).json()["results"]
    assert len(popped) == 1
    patched = api.client.patch(f"/tasks/{popped[0]['id']}", content='{"status": "running"}', headers=headers)
    assert patched.json()["status"] == "running"


def test_a_body_that_is_not_json_names_its_content_type(api: Api) -> None:
    response = api.client.post(
        "/schedulers/boefje/push", content="organisation=org1", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(
        "Bad request error occurred: the body is not JSON (Content-Type: text/plain): Expecting value"
    )
    bare = api.client.post("/tasks", content=b"not json")
    assert bare.status_code == 400
    assert "(Content-Type: none)" in bare.json()["detail"]
    declared = api.client.post("/tasks", content="{", headers={"content-type": "application/json"})
    assert declared.status_code == 422  # a broken JSON document stays FastAPI's JSON decode error
    assert declared.json()["detail"][0]["type"] == "json_invalid"


# manual pushes and their schedules (reference §4.4)


def test_a_manual_boefje_push_creates_its_schedule_with_the_plugins_interval(
    make_api: MakeApi, catalog: InMemoryCatalog
) -> None:
    catalog.add_plugin("org1", dns_records(interval=60))
    api = make_api(catalog=catalog)
    task = push(api, boefje_data())
    assert task["schedule_id"] is not None
    schedule = api.client.get(f"/schedules/{task['schedule_id']}").json()
    assert (schedule["hash"], schedule["enabled"], schedule["scheduler_id"]) == (task["hash"], True, "boefje")
    assert schedule["deadline_at"] == "2026-11-28T13:00:00Z"  # now + the plugin's 60 minutes
    assert api.client.get("/schedules").json()["count"] == 1


def test_a_manual_boefje_push_moves_its_existing_schedule_to_the_plugins_cron(
    make_api: MakeApi, catalog: InMemoryCatalog
) -> None:
    catalog.add_plugin("org1", dns_records(cron="0 3 * * *"))
    api = make_api(catalog=catalog)
    first = push(api, boefje_data())
    api.client.post("/schedulers/boefje/pop")
    api.client.patch(f"/tasks/{first['id']}", json={"status": "completed"})
    api.clock.advance(timedelta(days=2))
    second = push(api, boefje_data())
    assert second["schedule_id"] == first["schedule_id"]
    schedule = api.client.get(f"/schedules/{second['schedule_id']}").json()
    assert (schedule["schedule"], schedule["deadline_at"]) == ("0 3 * * *", "2026-12-01T03:00:00Z")
    assert api.client.get("/schedules").json()["count"] == 1


def test_a_manual_boefje_push_without_an_answer_from_the_katalogus_uses_the_grace_period(
    make_api: MakeApi, catalog: InMemoryCatalog
) -> None:
    api = make_api(catalog=catalog)  # the plugin is unknown to the catalogue
    task = push(api, boefje_data())
    schedule = api.client.get(f"/schedules/{task['schedule_id']}").json()
    assert schedule["deadline_at"] == "2026-11-29T12:00:00Z"  # the default grace period, one day


def test_a_manual_report_push_creates_a_one_off_schedule(make_api: MakeApi, catalog: InMemoryCatalog) -> None:
    api = make_api(catalog=catalog)
    task = push(api, report_data(), "report")
    schedule = api.client.get(f"/schedules/{task['schedule_id']}").json()
    assert (schedule["deadline_at"], schedule["schedule"], schedule["enabled"]) == (None, None, True)
    assert schedule["hash"] == task["hash"]


def test_a_manual_report_push_moves_a_cron_schedule_to_its_next_fire(
    make_api: MakeApi, catalog: InMemoryCatalog
) -> None:
    api = make_api(catalog=catalog)
    created = api.client.post("/schedules", json=report_schedule(schedule="0 6 * * *")).json()
    api.clock.advance(timedelta(days=1))
    task = push(api, report_data(), "report")
    assert task["schedule_id"] == created["id"]
    assert api.client.get(f"/schedules/{created['id']}").json()["deadline_at"] == "2026-11-30T06:00:00Z"


def test_a_disabled_schedule_is_left_alone(make_api: MakeApi, catalog: InMemoryCatalog) -> None:
    catalog.add_plugin("org1", dns_records(interval=60))
    api = make_api(catalog=catalog)
    created = api.client.post("/schedules", json=report_schedule(deadline_at="2026-12-24T00:00:00Z"))
    api.client.patch(f"/schedules/{created.json()['id']}", json={"enabled": False})
    task = push(api, report_data(), "report")
    assert task["schedule_id"] is None
    schedule = api.client.get(f"/schedules/{created.json()['id']}").json()
    assert (schedule["enabled"], schedule["deadline_at"]) == (False, "2026-12-24T00:00:00Z")


def test_normalizer_pushes_create_no_schedule(make_api: MakeApi, catalog: InMemoryCatalog) -> None:
    api = make_api(catalog=catalog)
    assert push(api, normalizer_data(), "normalizer")["schedule_id"] is None
    assert api.client.get("/schedules").json()["count"] == 0


# a runner repeating its last report


def test_a_retried_status_patch_is_a_200_no_op_that_records_a_heartbeat(api: Api) -> None:
    task = push(api, boefje_data())
    api.client.post("/schedulers/boefje/pop")
    api.client.patch(f"/tasks/{task['id']}", json={"status": "running"})
    done = api.client.patch(f"/tasks/{task['id']}", json={"status": "completed"})
    api.clock.advance(timedelta(seconds=3))
    again = api.client.patch(f"/tasks/{task['id']}", json={"status": "completed"})
    assert (done.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "completed"
    assert again.json()["modified_at"] == "2026-11-28T12:00:03Z"
    other = api.client.patch(f"/tasks/{task['id']}", json={"status": "failed"})
    assert other.status_code == 409
