"""Inputs that must never be stored, or break a read for everyone afterwards (issue 11): each is refused with
a precise 400 and nothing committed, and every read still answers 200 afterwards. SQLite and PostgreSQL.

And the principle behind them: a pop never commits a claim whose answer cannot be rendered.
"""

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from katsched.core.filter_terms import ANY_WEIGHT, MAX_TERMS
from katsched.core.models import TaskStatus
from katsched.core.ports import TaskQuery
from katsched.store.tables import tasks
from tests.contract import api_support
from tests.contract.api_support import BOEFJE_OOI, Api, boefje_data, push

api, make_api = api_support.api, api_support.make_api  # the fixtures

JSON = {"content-type": "application/json"}


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = {"a": value}
    return value


def push_text(data: str, priority: str = "1", organisation: str = '"org1"') -> str:
    return f'{{"organisation": {organisation}, "priority": {priority}, "data": {data}}}'


BOEFJE = '{"boefje": {"id": "dns-records"}, "input_ooi": "Hostname|internet|x", "organization": "org1"'
POISON = {
    "data 65 levels deep": (
        push_text(BOEFJE + f', "extra": {json.dumps(nested(64))}}}'),
        "body.data.extra.a.a.a",
        "nested more than 64 levels deep",
    ),
    "data 250 levels deep": (
        push_text(BOEFJE + f', "extra": {json.dumps(nested(250))}}}'),
        "body.data.extra.a",
        "nested more than 64 levels deep",
    ),
    "NaN in data": (push_text(BOEFJE + ', "x": NaN}'), "", "the body holds NaN, which is not a JSON number"),
    "Infinity in data": (
        push_text(BOEFJE + ', "x": [1, Infinity]}'),
        "",
        "the body holds Infinity, which is not a JSON number",
    ),
    "-Infinity in data": (
        push_text(BOEFJE + ', "x": {"y": -Infinity}}'),
        "",
        "the body holds -Infinity, which is not a JSON number",
    ),
    "an overflowing number": (
        push_text(BOEFJE + ', "x": 1e999}'),
        "body.data.x",
        "inf is out of range for a JSON number",
    ),
    "NaN priority": (push_text(BOEFJE + "}", priority="NaN"), "", "the body holds NaN"),
    "a lone surrogate in data": (
        push_text(BOEFJE.replace("Hostname|internet|x", "Hostname|internet|\\ud800") + "}"),
        "body.data.input_ooi",
        "a lone UTF-16 surrogate cannot be stored as text",
    ),
    "a lone surrogate in a key": (
        push_text(BOEFJE + ', "\\udc00": 1}'),
        "body.data",
        "a key holds a lone UTF-16 surrogate",
    ),
    "a lone surrogate in the organisation": (
        push_text(BOEFJE + "}", organisation='"org\\udfff"'),
        "body.organisation",
        "a lone UTF-16 surrogate cannot be stored as text",
    ),
}


def assert_reads_still_answer(api: Api) -> None:
    """Every read that a stored poison used to break, and a pop, still answer 200."""
    good = push(api, boefje_data())
    assert api.client.get("/tasks").status_code == 200
    filtered = {"filters": [{"column": "data", "field": "input_ooi", "operator": "==", "value": BOEFJE_OOI}]}
    listed = api.client.post("/tasks", json=filtered)
    assert (listed.status_code, listed.json()["count"]) == (200, 1)
    by_ooi = api.client.get("/tasks", params={"input_ooi": BOEFJE_OOI})
    assert (by_ooi.status_code, by_ooi.json()["count"]) == (200, 1)
    popped = api.client.post("/schedulers/boefje/pop")
    assert popped.status_code == 200
    assert [task["id"] for task in popped.json()["results"]] == [good["id"]]


@pytest.mark.parametrize("case", POISON, ids=list(POISON))
def test_a_poison_push_is_refused_with_a_precise_400_and_nothing_stored(api: Api, case: str) -> None:
    body, where, reason = POISON[case]
    for scheduler in ("boefje", "report"):  # refused before the body reaches any scheduler's rules
        response = api.client.post(f"/schedulers/{scheduler}/push", content=body, headers=JSON)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert detail.startswith(f"Bad request error occurred: {where}"), detail
        assert reason in detail
    assert api.queue.list_tasks(TaskQuery(limit=None)).count == 0
    assert api.client.get("/schedules").json()["count"] == 0
    assert_reads_still_answer(api)


@pytest.mark.parametrize("case", ["data 250 levels deep", "NaN in data", "a lone surrogate in data"])
def test_poison_is_refused_by_every_json_endpoint(api: Api, case: str) -> None:
    body, _, reason = POISON[case]
    data = body[body.index('"data": ') + len('"data": ') : -1]
    task = push(api, boefje_data("Hostname|internet|other"))
    attempts = {
        (
            "POST",
            "/schedules",
        ): f'{{"scheduler_id": "boefje", "organisation": "org1", "schedule": "0 3 * * *", "data": {data}}}',
        ("PATCH", f"/tasks/{task['id']}"): f'{{"data": {data}}}',
        ("POST", "/tasks"): f'{{"filters": [{{"column": "data", "operator": "@>", "value": {data}}}]}}',
    }
    for (method, path), document in attempts.items():
        response = api.client.request(method, path, content=document, headers=JSON)
        assert response.status_code == 400, (path, response.text)
        assert reason in response.json()["detail"]
    assert api.client.get("/schedules").json()["count"] == 0
    assert api.queue.get(uuid.UUID(task["id"])).data == boefje_data("Hostname|internet|other") | {
        "id": task["id"]
    }


def equals(n: int) -> dict[str, Any]:
    return {"column": "data", "field": "input_ooi", "operator": "==", "value": f"Hostname|internet|h{n}"}


# The heaviest term of each kind, as many as the cap allows: every one fits both databases.
AT_THE_CAP = {
    "==": [equals(n) for n in range(MAX_TERMS)],
    "any": [
        {
            "column": "data",
            "field": "input_ooi",
            "operator": "any",
            "value": [f"h{n}" for n in range(MAX_TERMS // ANY_WEIGHT // 2)],
        }
    ]
    * 2,
    "match": [{"column": "data", "field": "input_ooi", "operator": "match", "value": "a b"}]
    * (MAX_TERMS // 2),
    "@>": [{"column": "data", "operator": "@>", "value": {f"k{n}": n for n in range(MAX_TERMS // 2)}}] * 2,
}


@pytest.mark.parametrize("kind", AT_THE_CAP)
def test_a_filter_at_the_term_cap_is_answered_on_both_databases(api: Api, kind: str) -> None:
    for document in ({"filters": AT_THE_CAP[kind]}, {"filters": {"or": AT_THE_CAP[kind]}}):
        assert api.client.post("/tasks", json=document).status_code == 200
        assert api.client.post("/schedulers/boefje/pop", json=document).status_code == 200


@pytest.mark.parametrize("terms", [MAX_TERMS + 1, 999])
def test_a_filter_over_the_term_cap_is_400_never_503(api: Api, terms: int) -> None:
    push(api, boefje_data())
    for group in ("and", "or"):
        document = {"filters": {group: [equals(n) for n in range(terms)]}}
        for path in ("/tasks", "/schedulers/boefje/pop", "/schedules/search"):
            response = api.client.post(path, json=document)
            assert response.status_code == 400, (path, response.text)
            reason = f"filters: {terms} terms, more than the {MAX_TERMS} one query may hold"
            assert response.json() == {"detail": f"Invalid filter(s): {reason}"}
    assert (
        api.queue.get(uuid.UUID(api.client.get("/tasks").json()["results"][0]["id"])).status
        is TaskStatus.QUEUED
    )
    assert_reads_still_answer_after_pop_of(api)


def assert_reads_still_answer_after_pop_of(api: Api) -> None:
    assert api.client.get("/tasks").status_code == 200
    assert api.client.get("/tasks", params={"input_ooi": BOEFJE_OOI}).json()["count"] == 1
    assert len(api.client.post("/schedulers/boefje/pop").json()["results"]) == 1


# a pop never commits a claim it cannot answer


def test_a_pop_never_commits_a_claim_whose_answer_cannot_be_rendered(api: Api, engine: Engine) -> None:
    good = push(api, boefje_data(), priority=10)
    unrenderable = uuid.uuid4()  # stored before the API refused such data: too deep to render
    data = boefje_data("Hostname|internet|old") | {"id": str(unrenderable), "extra": nested(300)}
    now = api.clock.now()
    with engine.begin() as connection:
        connection.execute(insert(tasks), {
            "id": unrenderable, "scheduler_id": "boefje", "organisation": "org1", "priority": 1,
            "status": "queued", "type": "boefje", "hash": "0" * 32, "data": data,
            "created_at": now, "modified_at": now,
        })  # fmt: skip
    response = api.client.post("/schedulers/boefje/pop", params={"limit": 2})
    assert response.status_code == 200
    assert [task["id"] for task in response.json()["results"]] == [good["id"]]
    assert api.queue.get(uuid.UUID(good["id"])).status is TaskStatus.DISPATCHED
    assert api.queue.get(unrenderable).status is TaskStatus.FAILED  # never handed out as claimed
    status, _, reason = api.queue.history(unrenderable)[-1]
    assert status is TaskStatus.FAILED
    assert reason is not None and reason.startswith("cannot be rendered as JSON: ")
    assert api.client.post("/schedulers/boefje/pop").json() == {"results": []}


def test_a_claim_is_rolled_back_when_rendering_raises_something_unforeseen(api: Api) -> None:
    task = push(api, boefje_data())

    def broken(_task: Any) -> bytes:
        raise RuntimeError("the renderer itself is broken")

    with pytest.raises(RuntimeError):
        api.queue.pop_rendered("boefje", 1, None, broken)
    assert api.queue.get(uuid.UUID(task["id"])).status is TaskStatus.QUEUED
