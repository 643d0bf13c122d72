"""The fast path of push and pop (`katsched.api.hot`) answers exactly as FastAPI's routes do.

A body sent with a Content-Length takes the fast path; the same body sent chunked (no Content-Length) is
left to FastAPI. Each case sends both and compares status, headers and body, on SQLite and PostgreSQL."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.contract import api_support
from tests.contract.api_support import Api, boefje_data, push, push_body

api, make_api = api_support.api, api_support.make_api  # the fixtures

KEPT_HEADERS = ("content-type", "retry-after")


def _chunked(body: bytes) -> Iterator[bytes]:
    yield body


def _both(api: Api, path: str, body: bytes | None, **headers: str) -> tuple[httpx.Response, httpx.Response]:
    """(the fast path's answer, FastAPI's answer) to the same request."""
    fast = api.client.post(path, content=body or b"", headers=headers)
    assert body is None or fast.request.headers["content-length"] == str(len(body))
    slow = api.client.post(path, content=_chunked(body or b""), headers=headers)
    assert "content-length" not in slow.request.headers
    return fast, slow


def _same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code
    assert fast.content == slow.content
    for name in KEPT_HEADERS:
        assert fast.headers.get(name) == slow.headers.get(name), name
    assert fast.headers["content-length"] == str(len(fast.content))


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


REFUSED: list[tuple[str, bytes | None, dict[str, str]]] = [
    ("/schedulers/nope/push", _json(push_body(boefje_data())), {}),  # 404
    ("/schedulers/boefje/push", _json(push_body(boefje_data(), scheduler_id="report")), {}),  # 400
    ("/schedulers/boefje/push", _json(push_body(boefje_data(), colour="red")), {}),  # 422 unknown key
    ("/schedulers/boefje/push", _json(push_body({"boefje": {}})), {}),  # 400 malformed item
    ("/schedulers/boefje/push", b"{not json", {"content-type": "application/json"}),  # 422 json_invalid
    ("/schedulers/boefje/push", b"{not json", {"content-type": "text/plain"}),  # 400 names the type
    ("/schedulers/boefje/push", b'{"organisation": NaN}', {}),  # 400 poison
    ("/schedulers/boefje/push", b"", {}),  # 422 missing body
    ("/schedulers/boefje/push", b"null", {}),  # 422
    ("/schedulers/boefje/push", b"[]", {}),  # 422
    ("/schedulers/nope/pop", None, {}),  # 404
    ("/schedulers/boefje/pop?limit=1001", None, {}),  # 422
    ("/schedulers/boefje/pop?limit=x", None, {}),  # 422
    ("/schedulers/boefje/pop?limit=-1", None, {}),  # 422
    ("/schedulers/boefje/pop", b"[]", {}),  # 422: not an object
    ("/schedulers/boefje/pop", _json({"filters": [{"column": "x", "operator": "eq"}]}), {}),  # 400
    ("/schedulers/boefje/pop", b"{", {}),  # 422
    ("/schedulers/boefje/pop?limit=2&other=1", None, {}),  # 200, empty
    ("/schedulers/boefje/pop?limit=0", None, {}),  # 200, empty
    ("/schedulers/boefje/pop", b"null", {}),  # 200, empty
]


@pytest.mark.parametrize(("path", "body", "headers"), REFUSED)
def test_refusals_and_empty_pops_are_answered_alike(
    api: Api, path: str, body: bytes | None, headers: dict[str, str]
) -> None:
    fast, slow = _both(api, path, body, **headers)
    _same(fast, slow)
    assert api.queue.qsize("boefje") == 0


def test_a_queued_duplicate_is_refused_alike_with_retry_after(api: Api) -> None:
    push(api, boefje_data())
    fast, slow = _both(api, "/schedulers/boefje/push", _json(push_body(boefje_data())))
    _same(fast, slow)
    assert (fast.status_code, fast.headers["retry-after"]) == (409, "60")


def test_pushes_and_pops_are_answered_alike(api: Api) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    bodies = [
        _json(push_body(boefje_data(ooi=f"Hostname|internet|h{i}.example", id=str(ids[i])))) for i in (0, 1)
    ]
    fast = api.client.post("/schedulers/boefje/push", content=bodies[0])
    slow = api.client.post("/schedulers/boefje/push", content=_chunked(bodies[1]))
    assert fast.status_code == slow.status_code == 201
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    pushed = [fast.json(), slow.json()]
    assert [task["id"] for task in pushed] == [str(task_id) for task_id in ids]
    assert _without_identity(pushed[0]) == _without_identity(pushed[1])
    filters = _json(
        {"filters": [{"column": "data", "field": "boefje__id", "operator": "eq", "value": "dns-records"}]}
    )
    popped = [
        api.client.post("/schedulers/boefje/pop?limit=1", content=filters, headers={"User-Agent": "fast"}),
        api.client.post("/schedulers/boefje/pop", content=_chunked(filters), headers={"User-Agent": "slow"}),
    ]
    assert [response.status_code for response in popped] == [200, 200]
    [first], [second] = (response.json()["results"] for response in popped)
    assert [first["id"], second["id"]] == [str(task_id) for task_id in ids]
    assert _without_identity(first) == _without_identity(second)
    runners = [api.queue.popped_by(task_id) for task_id in ids]
    assert [(runner.address, runner.agent) for runner in runners if runner] == [
        ("testclient", "fast"),
        ("testclient", "slow"),
    ]


def test_latency_and_counters_are_kept_for_the_fast_path(api: Api) -> None:
    push(api, boefje_data())
    assert api.client.post("/schedulers/boefje/pop?limit=1").status_code == 200
    assert api.client.post("/schedulers/nope/pop").status_code == 404
    metrics = api.client.get("/metrics").text
    assert 'scheduler_tasks_pushed_total{scheduler_id="boefje"} 1.0' in metrics
    assert 'scheduler_pops_total{scheduler_id="boefje"} 1.0' in metrics
    assert 'scheduler_tasks_popped_total{scheduler_id="boefje"} 1.0' in metrics
    for route, status in (("push", "201"), ("pop", "200"), ("pop", "404")):
        labels = f'method="POST",route="/schedulers/{{scheduler_id}}/{route}",status="{status}"'
        assert f"scheduler_http_request_duration_seconds_count{{{labels}}} 1.0" in metrics


def test_the_token_is_required_on_the_fast_path(make_api: api_support.MakeApi) -> None:
    guarded = make_api(token="s3cret")
    body = _json(push_body(boefje_data()))
    refused = guarded.client.post("/schedulers/boefje/push", content=body)
    assert (refused.status_code, refused.json()) == (401, {"detail": "Not authenticated"})
    allowed = guarded.client.post(
        "/schedulers/boefje/push", content=body, headers={"Authorization": "Bearer s3cret"}
    )
    assert allowed.status_code == 201


def _without_identity(task: dict[str, Any]) -> dict[str, Any]:
    data = {key: value for key, value in task["data"].items() if key not in ("id", "input_ooi")}
    return {**{key: value for key, value in task.items() if key not in ("id", "hash")}, "data": data}
