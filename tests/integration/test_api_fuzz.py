"""Property-based run of the whole API from its own OpenAPI document (schemathesis): whatever a client sends,
valid by the document or not, the API never answers with a server error, and its answers match the document.

Each operation runs as its own test, on SQLite and on PostgreSQL (the filter SQL differs between them).
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from katsched.api import create_app
from katsched.clock import SystemClock
from katsched.core.models import OOI, Organisation, Plugin, PushPolicy, ScanProfile
from katsched.core.ports import TaskDraft
from katsched.schedulers.boefje import BoefjePlanner
from katsched.schedulers.explain import Explainer
from katsched.schedulers.normalizer import NormalizerPlanner
from katsched.store.decisions import SqlDecisionLog
from katsched.store.lookups import SqlTaskStore
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.testing import InMemoryCatalog, InMemoryObjectGraph, InMemoryRawDataIndex

pytestmark = pytest.mark.integration


def in_memory_explainer(engine: Engine, queue: SqlTaskQueue) -> Explainer:
    """`/explain` over in-memory KAT services holding an organisation, a boefje and the objects above."""
    catalog, graph, clock = InMemoryCatalog(), InMemoryObjectGraph(), queue.clock
    catalog.add_organisation(Organisation(id="org1"))
    boefje = Plugin(
        id="dns-records", type="boefje", enabled=True, scan_level=1, consumes=["Hostname"], produces=[]
    )
    catalog.add_plugin("org1", boefje)
    for i in range(5):
        reference = f"Hostname|internet|h{i}"
        profile = ScanProfile(level=i % 5, reference=reference, scan_profile_type="declared")
        graph.add("org1", OOI(primary_key=reference, object_type="Hostname", scan_profile=profile))
    tasks, schedules, decisions = SqlTaskStore(queue), SqlScheduleStore(engine, clock), SqlDecisionLog(engine)
    planner = BoefjePlanner(
        tasks=tasks,
        schedules=schedules,
        seen=SqlSeenPlugins(engine),
        catalog=catalog,
        objects=graph,
        raw_data=InMemoryRawDataIndex(),
        clock=clock,
        decisions=decisions,
    )
    normalizers = NormalizerPlanner(tasks=tasks, catalog=catalog, clock=clock, decisions=decisions)
    return Explainer(
        boefjes=planner,
        normalizers=normalizers,
        catalog=catalog,
        objects=graph,
        tasks=tasks,
        schedules=schedules,
        decisions=decisions,
        clock=clock,
    )


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = [
    "GET /",
    "GET /health",
    "GET /metrics",
    "GET /schedulers",
    "GET /schedulers/{scheduler_id}",
    "POST /schedulers/{scheduler_id}/push",
    "POST /schedulers/{scheduler_id}/pop",
    "GET /queues",
    "GET /tasks",
    "POST /tasks",
    "GET /tasks/stats",
    "GET /tasks/{task_id}",
    "PATCH /tasks/{task_id}",
    "GET /schedules",
    "POST /schedules",
    "POST /schedules/search",
    "GET /schedules/{schedule_id}",
    "PATCH /schedules/{schedule_id}",
    "DELETE /schedules/{schedule_id}",
    "GET /explain",
]

# Operations with no input that can be made invalid (no body, no constrained parameter): no negative cases.
NOTHING_TO_NEGATE = {
    "GET /",
    "GET /metrics",
    "GET /schedulers",
    "GET /schedulers/{scheduler_id}",
    "GET /queues",
}
CASES = [(label, schemathesis.GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, schemathesis.GenerationMode.NEGATIVE) for label in OPERATIONS if label not in NOTHING_TO_NEGATE
]


@pytest.fixture
def api_schema(engine: Engine) -> schemathesis.BaseSchema:
    clock = SystemClock()
    queue = SqlTaskQueue(engine, clock, {"report": PushPolicy(maxsize=3)})
    schedules = SqlScheduleStore(engine, clock)
    for i in range(5):  # something to find, pop and patch
        data = {
            "boefje": {"id": "dns-records"},
            "input_ooi": f"Hostname|internet|h{i}",
            "organization": "org1",
        }
        task = queue.push(TaskDraft("boefje", "org1", 10, data))
        schedules.create("boefje", "org1", task.data, task.hash, deadline_at=clock.now())
    explainer = in_memory_explainer(engine, queue)
    app = create_app(queue, schedules, clock, health_checks={"katalogus": lambda: True}, explainer=explainer)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_the_document_lists_exactly_these_operations(api_schema: schemathesis.BaseSchema) -> None:
    assert sorted(result.ok().label for result in api_schema.get_all_operations()) == sorted(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_the_api_keeps_to_its_document(
    api_schema: schemathesis.BaseSchema, label: str, mode: schemathesis.GenerationMode
) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def keeps_to_the_document(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    keeps_to_the_document()
