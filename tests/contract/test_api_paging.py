"""Offset paging over every listing is stable (issue 16): tasks pushed in one transaction share
`created_at`, so each listing's order ends in the primary key. On SQLite and PostgreSQL."""

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from katsched.core.ports import ScheduleLink, TaskDraft
from katsched.store.lookups import SqlTaskStore
from katsched.store.tables import schedules
from tests.contract import api_support
from tests.contract.api_support import Api, boefje_data

api, make_api = api_support.api, api_support.make_api  # the fixtures

BATCHES, PER_BATCH = 15, 100


def push_in_batches(api: Api, *, schedules: bool = False) -> set[str]:
    """BATCHES * PER_BATCH boefje tasks, each batch in one transaction, two batches per instant."""
    store = SqlTaskStore(api.queue)
    pushed: set[str] = set()
    for batch in range(BATCHES):
        if batch % 2 == 0:
            api.clock.advance(timedelta(seconds=1))
        drafts = [
            TaskDraft(
                "boefje",
                "org1",
                priority=5,
                data=boefje_data(ooi=f"Hostname|internet|h{batch}-{n}.example"),
                schedule=ScheduleLink(None, api.clock.now()) if schedules else None,
            )
            for n in range(PER_BATCH)
        ]
        for outcome in store.push_many(drafts):
            assert outcome.task is not None
            pushed.add(str(outcome.task.id))
    return pushed


def page_through(api: Api, path: str, method: str = "GET", **body: Any) -> list[str]:
    """Every result id, following the `next` links of `limit=100` pages."""
    return [item["id"] for item in pages(api, path, method, **body)]


def pages(api: Api, path: str, method: str = "GET", **body: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    url: str | None = f"{path}?limit=100"
    while url is not None:
        response = api.client.request(method, url, json=body or None)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += page["results"]
        url = page["next"]
    return seen


def assert_each_once_and_stable(
    api: Api, path: str, expected: set[str], method: str = "GET", **body: Any
) -> None:
    first = page_through(api, path, method, **body)
    assert len(first) == len(expected)
    assert set(first) == expected
    assert page_through(api, path, method, **body) == first


def test_task_pages_return_each_task_exactly_once_in_a_stable_order(api: Api) -> None:
    pushed = push_in_batches(api)
    assert len(pushed) == BATCHES * PER_BATCH
    assert_each_once_and_stable(api, "/tasks", pushed)
    assert_each_once_and_stable(api, "/tasks", pushed, method="POST")


def test_schedule_pages_return_each_schedule_exactly_once_in_a_stable_order(api: Api) -> None:
    push_in_batches(api, schedules=True)
    with api.schedules.engine.connect() as connection:
        created = {str(schedule_id) for schedule_id in connection.execute(select(schedules.c.id)).scalars()}
    assert len(created) == BATCHES * PER_BATCH
    assert_each_once_and_stable(api, "/schedules", created)
    boefje_only = {"and": [{"column": "scheduler_id", "operator": "==", "value": "boefje"}]}
    assert_each_once_and_stable(api, "/schedules/search", created, method="POST", filters=boefje_only)


def test_peek_offsets_are_stable(api: Api) -> None:
    pushed = push_in_batches(api)
    seen = [
        str(task.id)
        for offset in range(0, len(pushed), 100)
        for task in api.queue.peek("boefje", 100, offset)
    ]
    assert len(seen) == len(pushed) and set(seen) == pushed
    assert [str(task.id) for task in api.queue.peek("boefje", len(pushed))] == seen


def test_ties_are_broken_by_the_id(api: Api) -> None:
    """Same instant, same priority: the listing is newest first, then the higher id first."""
    pushed = push_in_batches(api)
    listed = pages(api, "/tasks")
    keys = [(task["created_at"], uuid.UUID(task["id"])) for task in listed]
    assert keys == sorted(keys, reverse=True) and len(keys) == len(pushed)
