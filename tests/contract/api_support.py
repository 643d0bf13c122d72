"""What the API tests share: an app over a real database (the `engine` fixture), payload builders, and a
TestClient wrapper that remembers the stores behind it."""

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from katsched.api import create_app
from katsched.api.context import HealthCheck
from katsched.core.models import PushPolicy
from katsched.core.ports import PluginCatalog
from katsched.schedulers.manual import ManualPushes
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.testing import FakeClock

BOEFJE_OOI = "Hostname|internet|example.com"


@dataclass
class Api:
    client: TestClient
    queue: SqlTaskQueue
    schedules: SqlScheduleStore
    clock: FakeClock


MakeApi = Callable[..., Api]


@pytest.fixture
def make_api(engine: Engine, clock: FakeClock) -> Iterator[MakeApi]:
    clients: list[TestClient] = []

    def make(
        policies: Mapping[str, PushPolicy] | None = None,
        *,
        token: str | None = None,
        max_body_bytes: int = 1_048_576,
        health_checks: Mapping[str, HealthCheck] | None = None,
        raise_server_exceptions: bool = True,
        catalog: PluginCatalog | None = None,
    ) -> Api:
        queue = SqlTaskQueue(engine, clock, policies)
        schedules = SqlScheduleStore(engine, clock)
        manual = ManualPushes(catalog, clock) if catalog is not None else None
        app = create_app(
            queue,
            schedules,
            clock,
            token=token,
            max_body_bytes=max_body_bytes,
            health_checks=health_checks,
            version="9.9.9",
            manual_pushes=manual,
        )
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        clients.append(client)
        return Api(client, queue, schedules, clock)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api()


def boefje_data(
    ooi: str | None = BOEFJE_OOI, org: str = "org1", boefje: str = "dns-records", **extra: Any
) -> dict[str, Any]:
    return {"boefje": {"id": boefje}, "input_ooi": ooi, "organization": org, **extra}


def normalizer_data(org: str = "org1", normalizer: str = "kat_dns_normalize") -> dict[str, Any]:
    meta = {
        "id": str(uuid.UUID(int=1)),
        "boefje": {"id": "dns-records"},
        "input_ooi": BOEFJE_OOI,
        "organization": org,
        "started_at": None,
        "ended_at": None,
    }
    raw = {"id": str(uuid.uuid4()), "boefje_meta": meta, "mime_types": [{"value": "text/plain"}]}
    return {"normalizer": {"id": normalizer}, "raw_data": raw}


def report_data(recipe: str = "r1", org: str = "org1") -> dict[str, Any]:
    return {"report_recipe_id": recipe, "organisation_id": org}


def push_body(
    data: dict[str, Any], *, priority: int | None = 1, org: str = "org1", **extra: Any
) -> dict[str, Any]:
    return {"organisation": org, "priority": priority, "data": data, **extra}


def push(api: Api, data: dict[str, Any], scheduler: str = "boefje", **extra: Any) -> dict[str, Any]:
    response = api.client.post(f"/schedulers/{scheduler}/push", json=push_body(data, **extra))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
