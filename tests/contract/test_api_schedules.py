"""`/schedules` (GET, POST), `/schedules/search` and `/schedules/{schedule_id}` (GET, PATCH, DELETE):
reference §2.12 and §10.1, with the fixes of SPEC §4 (data validated and re-hashed, deadline recomputed)."""

import uuid
from datetime import timedelta
from typing import Any

import pytest

from katsched.core.models import Schedule
from tests.contract import api_support
from tests.contract.api_support import (
    Api,
    boefje_data,
    push,
    report_data,
)

api, make_api = api_support.api, api_support.make_api  # the fixtures

REPORT_HASH = "e2805bbc0ac29935b53a88d3ea52984e"  # r1-org1


@pytest.fixture
def two(api: Api) -> tuple[Schedule, Schedule]:
    """Two boefje schedules made directly in the store, deadlines in one and two days, a second apart."""
    now = api.clock.now()
    first = api.schedules.create(
        "boefje", "org1", boefje_data("a"), "a" * 32, deadline_at=now + timedelta(days=1)
    )
    api.clock.advance(timedelta(seconds=1))
    second = api.schedules.create(
        "boefje", "org1", boefje_data("b"), "b" * 32, deadline_at=now + timedelta(days=2)
    )
    return first, second


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [schedule["id"] for schedule in response.json()["results"]]


def stamp(schedule: Schedule, field: str) -> str:
    value = getattr(schedule, field)
    return str(value.isoformat())


def test_list_schedules(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, second = two
    response = api.client.get("/schedules")
    assert response.json()["count"] == 2
    assert ids(response) == [str(second.id), str(first.id)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"scheduler_id": "boefje"}, 2),
        ({"scheduler_id": "report"}, 0),
        ({"organisation": "org1"}, 2),
        ({"organisation": "other"}, 0),
        ({"enabled": "true"}, 2),
        ({"enabled": "false"}, 0),
        ({"schedule_hash": "a" * 32}, 1),
    ],
)
def test_list_filters(
    api: Api, two: tuple[Schedule, Schedule], params: dict[str, str], expected: int
) -> None:
    assert api.client.get("/schedules", params=params).json()["count"] == expected


@pytest.mark.parametrize("field", ["deadline_at", "created_at"])
def test_ranges_are_inclusive(api: Api, two: tuple[Schedule, Schedule], field: str) -> None:
    first, second = two
    both = {f"min_{field}": stamp(first, field), f"max_{field}": stamp(second, field)}
    assert len(ids(api.client.get("/schedules", params=both))) == 2
    only = {f"min_{field}": stamp(first, field), f"max_{field}": stamp(first, field)}
    assert ids(api.client.get("/schedules", params=only)) == [str(first.id)]
    assert ids(api.client.get("/schedules", params={f"min_{field}": stamp(second, field)})) == [
        str(second.id)
    ]
    assert ids(api.client.get("/schedules", params={f"max_{field}": stamp(first, field)})) == [str(first.id)]


@pytest.mark.parametrize("field", ["deadline_at", "created_at"])
def test_min_after_max_is_400(api: Api, field: str) -> None:
    params = {f"min_{field}": "2026-01-02T00:00:00Z", f"max_{field}": "2026-01-01T00:00:00Z"}
    response = api.client.get("/schedules", params=params)
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Bad request error occurred: min_{field} must be less than max_{field}"
    }


def test_pages_link_to_each_other(api: Api, two: tuple[Schedule, Schedule]) -> None:
    page = api.client.get("/schedules", params={"limit": 1}).json()
    assert page["next"] == "http://testserver/schedules?limit=1&offset=1"
    assert page["previous"] is None


# create


def test_create_with_a_cron_sets_the_next_fire_as_deadline(api: Api) -> None:
    body = {
        "scheduler_id": "report",
        "organisation": "org1",
        "data": report_data(),
        "schedule": "*/5 * * * *",
    }
    response = api.client.post("/schedules", json=body)
    assert response.status_code == 201
    created = response.json()
    assert created["hash"] == REPORT_HASH
    assert created["data"] == report_data()
    assert created["deadline_at"] == "2026-11-28T12:05:00Z"
    assert (created["enabled"], created["schedule"]) == (True, "*/5 * * * *")
    assert api.client.get(f"/schedules/{created['id']}").json() == created


def test_an_explicit_deadline_wins_over_the_cron(api: Api) -> None:
    body = {
        "scheduler_id": "report",
        "organisation": "org1",
        "data": {**report_data(), "type": "report"},  # Rocky's extra key is kept
        "schedule": "0 0 * * *",
        "deadline_at": "2026-11-28T12:30:00+00:00",
    }
    created = api.client.post("/schedules", json=body).json()
    assert created["deadline_at"] == "2026-11-28T12:30:00Z"
    assert created["data"]["type"] == "report"


def test_create_with_only_a_deadline(api: Api) -> None:
    body = {
        "scheduler_id": "boefje",
        "organisation": "org1",
        "data": boefje_data(),
        "deadline_at": "2026-11-28T12:00:00Z",
    }
    created = api.client.post("/schedules", json=body).json()
    assert (created["schedule"], created["deadline_at"]) == (None, "2026-11-28T12:00:00Z")
    assert created["hash"] == "74956880324db1838156e1ebf7847448"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "Bad request error occurred: Either deadline_at or schedule must be provided"),
        (
            {"schedule": "invalid"},
            "Validation error occurred: validation error for schedule: Invalid cron expression: invalid",
        ),
        (
            {"schedule": "0 0 31 2 *"},
            "Validation error occurred: validation error for schedule: Invalid cron expression: 0 0 31 2 *",
        ),
        (
            {"scheduler_id": "invalid", "schedule": "0 * * * *"},
            "Bad request error occurred: Scheduler invalid not found",
        ),
        (
            {"data": {"invalid": "invalid"}, "schedule": "0 * * * *"},
            "Bad request error occurred: data is not a valid ReportTask",
        ),
    ],
)
def test_create_refusals_are_400(api: Api, body: dict[str, Any], detail: str) -> None:
    request = {"scheduler_id": "report", "organisation": "org1", "data": report_data(), **body}
    response = api.client.post("/schedules", json=request)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)


@pytest.mark.parametrize("body", [{"data": "invalid"}, {"bogus": 1}, {"organisation": None}])
def test_create_schema_errors_are_422(api: Api, body: dict[str, Any]) -> None:
    request = {
        "scheduler_id": "report",
        "organisation": "org1",
        "data": report_data(),
        "schedule": "0 * * * *",
    }
    assert api.client.post("/schedules", json={**request, **body}).status_code == 422


def test_create_with_an_existing_hash_is_409(api: Api) -> None:
    body = {"scheduler_id": "report", "organisation": "org1", "data": report_data(), "schedule": "0 * * * *"}
    assert api.client.post("/schedules", json=body).status_code == 201
    response = api.client.post("/schedules", json=body)
    assert response.status_code == 409
    assert response.headers["retry-after"] == "60"
    assert response.json() == {
        "detail": f"Conflict error occurred: schedule with the same hash already exists: {REPORT_HASH}"
    }


# get, patch, delete


def test_get_schedule(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    response = api.client.get(f"/schedules/{first.id}")
    assert response.status_code == 200
    assert Schedule.model_validate(response.json()) == first


def test_get_unknown_schedule_is_404(api: Api) -> None:
    missing = uuid.uuid4()
    response = api.client.get(f"/schedules/{missing}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"Resource not found: schedule not found, by schedule_id: {missing}"}


@pytest.mark.parametrize("path", ["/schedules/123.123", "/schedules/search"])
def test_get_with_a_malformed_id_is_422(api: Api, path: str) -> None:
    assert api.client.get(path).status_code == 422


def test_patch_enabled(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    api.clock.advance(timedelta(minutes=1))
    response = api.client.patch(f"/schedules/{first.id}", json={"enabled": False})
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert response.json()["modified_at"] == "2026-11-28T12:01:01Z"
    assert response.json()["deadline_at"] == stamp(first, "deadline_at").replace("+00:00", "Z")


def test_patch_schedule_recomputes_the_deadline(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    patched = api.client.patch(f"/schedules/{first.id}", json={"schedule": "*/5 * * * *"}).json()
    assert (patched["schedule"], patched["deadline_at"]) == ("*/5 * * * *", "2026-11-28T12:05:00Z")


def test_patch_schedule_keeps_a_deadline_given_with_it(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    body = {"schedule": "0 0 * * *", "deadline_at": "2026-12-24T18:00:00Z"}
    patched = api.client.patch(f"/schedules/{first.id}", json=body).json()
    assert (patched["schedule"], patched["deadline_at"]) == ("0 0 * * *", "2026-12-24T18:00:00Z")


def test_patch_null_schedule_clears_the_cron_only(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    api.client.patch(f"/schedules/{first.id}", json={"schedule": "0 0 * * *"})
    patched = api.client.patch(f"/schedules/{first.id}", json={"schedule": None}).json()
    assert (patched["schedule"], patched["deadline_at"]) == (None, "2026-11-29T00:00:00Z")


def test_patch_with_a_malformed_cron_is_400(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    response = api.client.patch(f"/schedules/{first.id}", json={"schedule": "malformed"})
    assert response.status_code == 400
    assert "validation error" in response.json()["detail"]
    assert api.schedules.get(first.id).schedule is None


def test_patch_data_is_validated_and_rehashed(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    patched = api.client.patch(
        f"/schedules/{first.id}", json={"data": boefje_data("Hostname|internet|example.com")}
    )
    assert patched.status_code == 200
    assert patched.json()["hash"] == "74956880324db1838156e1ebf7847448"
    invalid = api.client.patch(f"/schedules/{first.id}", json={"data": {"boefje": {}}})
    assert invalid.status_code == 400
    assert invalid.json()["detail"].startswith("Bad request error occurred: data is not a valid BoefjeTask")


def test_patch_data_onto_another_schedules_hash_is_409(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, second = two
    api.client.patch(f"/schedules/{second.id}", json={"data": boefje_data("x")})
    response = api.client.patch(f"/schedules/{first.id}", json={"data": boefje_data("x")})
    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "Conflict error occurred: schedule with the same hash already exists"
    )


def test_patch_hash_must_match_the_data(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    response = api.client.patch(f"/schedules/{first.id}", json={"hash": "f" * 32})
    assert response.status_code == 400
    assert (
        response.json()["detail"]
        == f"Bad request error occurred: hash {'f' * 32} does not match the hash of the data, {'a' * 32}"
    )
    assert api.client.patch(f"/schedules/{first.id}", json={"hash": "x" * 33}).status_code == 422


@pytest.mark.parametrize("body", [{}, {"invalid": "invalid"}, {"enabled": None}])
def test_nothing_to_patch_is_400(api: Api, two: tuple[Schedule, Schedule], body: dict[str, Any]) -> None:
    first, _ = two
    response = api.client.patch(f"/schedules/{first.id}", json=body)
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request error occurred: no data to patch"}


def test_patch_of_an_unknown_schedule_is_404(api: Api) -> None:
    assert api.client.patch(f"/schedules/{uuid.uuid4()}", json={"enabled": False}).status_code == 404


def test_delete_keeps_the_tasks_without_their_schedule(api: Api) -> None:
    task = push(api, report_data(), scheduler="report")
    schedule = api.schedules.create("report", "org1", report_data(), REPORT_HASH, deadline_at=api.clock.now())
    api.queue.update(uuid.UUID(task["id"]), {"schedule_id": schedule.id})
    response = api.client.delete(f"/schedules/{schedule.id}")
    assert (response.status_code, response.content) == (204, b"")
    assert api.client.get(f"/schedules/{schedule.id}").status_code == 404
    assert api.client.get(f"/tasks/{task['id']}").json()["schedule_id"] is None


def test_delete_of_an_unknown_schedule_is_204(api: Api) -> None:
    assert api.client.delete(f"/schedules/{uuid.uuid4()}").status_code == 204


# search


def test_search_with_a_filter(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    body = {"filters": [{"column": "data", "field": "input_ooi", "operator": "eq", "value": "a"}]}
    response = api.client.post("/schedules/search", json=body)
    assert response.json()["count"] == 1
    assert ids(response) == [str(first.id)]


def test_search_with_pagination(api: Api, two: tuple[Schedule, Schedule]) -> None:
    body = {"filters": {"and": [{"column": "scheduler_id", "operator": "==", "value": "boefje"}]}}
    page = api.client.post("/schedules/search", params={"limit": 1}, json=body).json()
    assert (page["count"], len(page["results"])) == (2, 1)
    assert page["next"] == "http://testserver/schedules/search?limit=1&offset=1"


def test_search_on_the_schedules_tasks(api: Api, two: tuple[Schedule, Schedule]) -> None:
    first, _ = two
    task = push(api, boefje_data("a"))
    api.queue.update(uuid.UUID(task["id"]), {"schedule_id": first.id})
    body = {"filters": [{"column": "tasks", "field": "status", "operator": "==", "value": "queued"}]}
    assert ids(api.client.post("/schedules/search", json=body)) == [str(first.id)]


def test_search_needs_a_body(api: Api) -> None:
    response = api.client.post("/schedules/search")
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "Field required"


def test_search_with_a_bad_filter_is_400(api: Api) -> None:
    response = api.client.post(
        "/schedules/search", json={"filters": [{"column": "nope", "operator": "==", "value": 1}]}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(
        'Invalid filter(s): filters[0].column: unknown column "nope" for schedules'
    )
