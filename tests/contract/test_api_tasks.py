"""`/tasks` (GET and POST), `/tasks/stats` and `/tasks/{task_id}` (GET, PATCH): reference §2.8 to §2.11 and
§10.1, with the fixes of SPEC §4 (input_ooi, checked transitions, modified_at bumped), on SQLite and
PostgreSQL."""

import uuid
from datetime import timedelta
from typing import Any

import pytest

from tests.contract import api_support
from tests.contract.api_support import (
    Api,
    boefje_data,
    normalizer_data,
    push,
    report_data,
)

api, make_api = api_support.api, api_support.make_api  # the fixtures


@pytest.fixture
def two(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two boefje tasks, one second apart, the first with a nested object in its data."""
    first = push(api, boefje_data(ooi="first", child={"name": "test.child"}))
    api.clock.advance(timedelta(seconds=1))
    second = push(api, boefje_data(ooi="second"), org="org2")
    return first, second


def ids(response: Any) -> list[str]:
    return [task["id"] for task in response.json()["results"]]


def test_list_is_paginated_newest_first(api: Api, two: tuple[dict, dict]) -> None:
    first, second = two
    response = api.client.get("/tasks")
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert (response.json()["next"], response.json()["previous"]) == (None, None)
    assert ids(response) == [second["id"], first["id"]]


def test_pagination_links_replace_limit_and_offset(api: Api, two: tuple[dict, dict]) -> None:
    first, _ = two
    page = api.client.get("/tasks", params={"limit": 1, "scheduler_id": "boefje"}).json()
    assert page["count"] == 2
    assert page["next"] == "http://testserver/tasks?scheduler_id=boefje&limit=1&offset=1"
    assert page["previous"] is None
    following = api.client.get(page["next"]).json()
    assert [task["id"] for task in following["results"]] == [first["id"]]
    assert following["previous"] == "http://testserver/tasks?scheduler_id=boefje&limit=1&offset=0"


def test_limit_zero_counts_only(api: Api, two: tuple[dict, dict]) -> None:
    page = api.client.get("/tasks", params={"limit": 0}).json()
    assert (page["count"], page["results"]) == (2, [])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"scheduler_id": "boefje"}, ["second", "first"]),
        ({"scheduler_id": "report"}, []),
        ({"organisation": "org2"}, ["second"]),
        ({"task_type": "boefje"}, ["second", "first"]),
        ({"task_type": "normalizer"}, []),
        ({"status": "queued"}, ["second", "first"]),
        ({"status": "completed"}, []),
        ({"input_ooi": "first"}, ["first"]),
        ({"input_ooi": "nothing"}, []),
        ({"task_type": "normalizer", "plugin_id": "kat_nmap_normalize"}, []),
    ],
)
def test_query_parameters_filter(api: Api, two: tuple[dict, dict], params: dict, expected: list[str]) -> None:
    by_ooi = {task["data"]["input_ooi"]: task["id"] for task in two}
    assert ids(api.client.get("/tasks", params=params)) == [by_ooi[name] for name in expected]


def test_a_bad_status_is_422(api: Api) -> None:
    response = api.client.get("/tasks", params={"status": "bogus"})
    assert response.status_code == 422


def test_created_at_ranges_are_inclusive(api: Api, two: tuple[dict, dict]) -> None:
    first, second = two
    both = {"min_created_at": first["created_at"], "max_created_at": second["created_at"]}
    assert len(ids(api.client.get("/tasks", params=both))) == 2
    only_first = {"min_created_at": first["created_at"], "max_created_at": first["created_at"]}
    assert ids(api.client.get("/tasks", params=only_first)) == [first["id"]]
    assert ids(api.client.get("/tasks", params={"min_created_at": second["created_at"]})) == [second["id"]]
    assert ids(api.client.get("/tasks", params={"max_created_at": first["created_at"]})) == [first["id"]]
    tomorrow = (api.clock.now() + timedelta(days=1)).isoformat()
    assert ids(api.client.get("/tasks", params={"min_created_at": tomorrow})) == []


def test_naive_times_mean_utc(api: Api, two: tuple[dict, dict]) -> None:
    _, second = two
    assert ids(api.client.get("/tasks", params={"min_created_at": "2026-11-28T12:00:01"})) == [second["id"]]


def test_min_after_max_is_400(api: Api) -> None:
    params = {"min_created_at": "2026-01-02T00:00:00Z", "max_created_at": "2026-01-01T00:00:00Z"}
    response = api.client.get("/tasks", params=params)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Bad request error occurred: min_created_at must be less than max_created_at"
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"column": "data", "field": "boefje__id", "operator": "eq", "value": "dns-records"}], 2),
        ([{"column": "data", "field": "input_ooi", "operator": "==", "value": "first"}], 1),
        ([{"column": "data", "field": "child__name", "operator": "eq", "value": "test.child"}], 1),
        ({"or": [{"column": "organisation", "operator": "in", "value": ["org2", "org9"]}]}, 1),
        ({"not": [{"column": "organisation", "operator": "==", "value": "org2"}]}, 1),
        ([], 2),
    ],
)
def test_filter_body_on_get_and_post(
    api: Api, two: tuple[dict, dict], method: str, filters: object, expected: int
) -> None:
    response = api.client.request(method, "/tasks", json={"filters": filters})
    assert response.status_code == 200
    assert response.json()["count"] == expected


def test_filters_combine_with_query_parameters(api: Api, two: tuple[dict, dict]) -> None:
    body = {"filters": [{"column": "data", "field": "boefje__id", "operator": "==", "value": "dns-records"}]}
    response = api.client.post("/tasks", params={"organisation": "org2"}, json=body)
    assert response.json()["count"] == 1


def test_filter_on_the_tasks_schedule(api: Api, two: tuple[dict, dict]) -> None:
    first, _ = two
    schedule = api.schedules.create(
        "boefje", "org1", first["data"], first["hash"], deadline_at=api.clock.now()
    )
    api.queue.update(uuid.UUID(first["id"]), {"schedule_id": schedule.id})
    now = api.clock.now().isoformat()
    later = {"filters": [{"column": "schedule", "field": "deadline_at", "operator": "lt", "value": now}]}
    assert api.client.post("/tasks", json=later).json()["count"] == 0
    due = {"filters": [{"column": "schedule", "field": "deadline_at", "operator": "lte", "value": now}]}
    assert ids(api.client.post("/tasks", json=due)) == [first["id"]]


def test_a_bad_filter_is_400(api: Api) -> None:
    response = api.client.post("/tasks", json={"filters": [{"column": "nope", "operator": "==", "value": 1}]})
    assert response.status_code == 400
    assert response.json()["detail"].startswith('Invalid filter(s): filters[0].column: unknown column "nope"')


def test_stats_count_each_status_per_hour(api: Api) -> None:
    push(api, boefje_data(ooi="a"))
    push(api, report_data(), scheduler="report", org="org2")
    api.client.post("/schedulers/boefje/pop")
    api.clock.advance(timedelta(hours=1))
    push(api, boefje_data(ooi="b"))
    zero = {
        "pending": 0,
        "queued": 0,
        "dispatched": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    response = api.client.get("/tasks/stats")
    assert response.status_code == 200
    assert response.json() == {
        "2026-11-28T13:00:00+00:00": {**zero, "queued": 1, "total": 1},
        "2026-11-28T12:00:00+00:00": {**zero, "queued": 1, "dispatched": 1, "total": 2},
    }
    assert list(api.client.get("/tasks/stats", params={"scheduler_id": "report"}).json().values()) == [
        {**zero, "queued": 1, "total": 1}
    ]
    assert api.client.get("/tasks/stats", params={"organisation_id": "org3"}).json() == {}


def test_stats_cover_the_last_day_only(api: Api) -> None:
    push(api, boefje_data())
    api.clock.advance(timedelta(hours=25))
    assert api.client.get("/tasks/stats").json() == {}


def test_get_task(api: Api, two: tuple[dict, dict]) -> None:
    first, _ = two
    response = api.client.get(f"/tasks/{first['id']}")
    assert response.status_code == 200
    assert response.json() == first


def test_get_task_with_a_malformed_id_is_422(api: Api) -> None:
    response = api.client.get("/tasks/123.123")
    assert response.status_code == 422
    assert "Input should be a valid UUID" in response.json()["detail"][0]["msg"]


def test_get_unknown_task_is_404(api: Api) -> None:
    missing = uuid.uuid4()
    response = api.client.get(f"/tasks/{missing}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"Resource not found: task not found, by task_id: {missing}"}


# PATCH


def test_patch_moves_the_status_and_bumps_modified_at(api: Api) -> None:
    task = push(api, boefje_data())
    api.client.post("/schedulers/boefje/pop")
    api.clock.advance(timedelta(seconds=10))
    response = api.client.patch(f"/tasks/{task['id']}", json={"status": "running"})
    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert response.json()["modified_at"] == "2026-11-28T12:00:10Z"
    assert api.client.get(f"/tasks/{task['id']}").json() == response.json()


def test_repatching_the_same_status_is_a_heartbeat(api: Api) -> None:
    task = push(api, boefje_data())
    api.client.post("/schedulers/boefje/pop")
    api.client.patch(f"/tasks/{task['id']}", json={"status": "running"})
    api.clock.advance(timedelta(minutes=5))
    response = api.client.patch(f"/tasks/{task['id']}", json={"status": "running"})
    assert response.status_code == 200
    assert response.json()["modified_at"] == "2026-11-28T12:05:00Z"


def test_a_forbidden_transition_is_409_with_the_allowed_moves(api: Api) -> None:
    task = push(api, boefje_data())
    response = api.client.patch(f"/tasks/{task['id']}", json={"status": "completed"})
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Conflict error occurred: cannot change status from queued to completed; "
        "allowed: cancelled, dispatched, queued"
    }
    assert "retry-after" not in response.headers
    api.client.patch(f"/tasks/{task['id']}", json={"status": "cancelled"})
    finished = api.client.patch(f"/tasks/{task['id']}", json={"status": "queued"})
    assert finished.status_code == 409
    assert finished.json()["detail"].endswith(
        "allowed: none, the task is finished (repeating cancelled is accepted)"
    )


@pytest.mark.parametrize("body", [{}, {"invalid": "invalid"}, {"status": None}, {"id": str(uuid.uuid4())}])
def test_nothing_to_patch_is_400(api: Api, body: dict[str, Any]) -> None:
    task = push(api, boefje_data())
    response = api.client.patch(f"/tasks/{task['id']}", json=body)
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request error occurred: no data to patch"}


def test_patch_of_an_unknown_task_is_404(api: Api) -> None:
    missing = uuid.uuid4()
    response = api.client.patch(f"/tasks/{missing}", json={"status": "running"})
    assert response.status_code == 404
    assert response.json() == {"detail": f"Resource not found: task not found, by task_id: {missing}"}


def test_patch_with_a_malformed_id_is_422(api: Api) -> None:
    assert api.client.patch("/tasks/123.123", json={"status": "running"}).status_code == 422


def test_patch_with_an_invalid_status_is_422(api: Api) -> None:
    task = push(api, boefje_data())
    response = api.client.patch(f"/tasks/{task['id']}", json={"status": "invalid"})
    assert response.status_code == 422
    assert "Input should be" in response.json()["detail"][0]["msg"]


def test_patch_priority_organisation_and_schedule(api: Api) -> None:
    task = push(api, report_data(), scheduler="report")
    schedule = api.schedules.create(
        "report", "org1", report_data(), task["hash"], deadline_at=api.clock.now()
    )
    changes = {"priority": 5, "organisation": "org9", "schedule_id": str(schedule.id)}
    patched = api.client.patch(f"/tasks/{task['id']}", json=changes).json()
    assert (patched["priority"], patched["organisation"], patched["schedule_id"]) == (
        5,
        "org9",
        str(schedule.id),
    )
    unlinked = api.client.patch(f"/tasks/{task['id']}", json={"schedule_id": None}).json()
    assert unlinked["schedule_id"] is None


def test_patch_to_an_unknown_schedule_is_400(api: Api) -> None:
    task = push(api, report_data(), scheduler="report")
    missing = uuid.uuid4()
    response = api.client.patch(f"/tasks/{task['id']}", json={"schedule_id": str(missing)})
    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"Bad request error occurred: schedule_id: schedule not found, by schedule_id: {missing}"
    )


def test_patch_priority_zero_is_400(api: Api) -> None:
    task = push(api, boefje_data())
    response = api.client.patch(f"/tasks/{task['id']}", json={"priority": 0})
    assert response.status_code == 400


def test_patched_data_is_validated_and_keeps_the_identity(api: Api) -> None:
    task = push(api, boefje_data())
    extended = {**boefje_data(), "deduplication_key": str(uuid.UUID(int=3))}
    response = api.client.patch(f"/tasks/{task['id']}", json={"data": extended})
    assert response.status_code == 200
    assert response.json()["data"] == {**extended, "id": task["id"]}
    other = api.client.patch(f"/tasks/{task['id']}", json={"data": boefje_data(ooi="elsewhere")})
    assert other.status_code == 400
    assert "identity" in other.json()["detail"]
    invalid = api.client.patch(f"/tasks/{task['id']}", json={"data": {"boefje": {}}})
    assert invalid.status_code == 400
    assert invalid.json()["detail"].startswith("Bad request error occurred: data is not a valid BoefjeTask")


def test_read_only_fields_in_a_patch_are_ignored(api: Api) -> None:
    task = push(api, normalizer_data(), scheduler="normalizer")
    api.client.post("/schedulers/normalizer/pop")
    body = {"status": "running", "hash": "0" * 32, "type": "report", "created_at": "2020-01-01T00:00:00Z"}
    patched = api.client.patch(f"/tasks/{task['id']}", json=body).json()
    assert (patched["status"], patched["hash"], patched["type"]) == ("running", task["hash"], "normalizer")
    assert patched["created_at"] == task["created_at"]
