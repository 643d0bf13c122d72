"""The world the planner tests share: the store ports of one implementation (`tests.stores`: in memory for
the unit tests, SQL where a test is about the database), the in-memory KAT services, and the planners built on
them; and the small builders of plugins, objects, mutations and raw files the tests use."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from katsched.core.models import (
    OOI,
    Boefje,
    BoefjeMeta,
    BoefjeTask,
    MutationOperation,
    Organisation,
    Plugin,
    PushPolicy,
    RawData,
    RawDataReceivedEvent,
    ScanProfile,
    ScanProfileMutation,
    Schedule,
    Task,
    TaskStatus,
)
from katsched.core.ports import (
    DecisionLog,
    ObjectGraph,
    PluginCatalog,
    PushResult,
    RawDataIndex,
    ScheduleRegistry,
    ScheduleStore,
    TaskDraft,
    TaskStore,
)
from katsched.core.transitions import LEASE_EXPIRED
from katsched.schedulers.boefje import BoefjePlanner
from katsched.schedulers.boefje_plan import BoefjePlannerSettings
from katsched.schedulers.normalizer import NormalizerPlanner, NormalizerPlannerSettings
from katsched.schedulers.report import ReportPlanner, ReportPlannerSettings
from katsched.schedulers.unplanned import UnplannedEvents
from katsched.testing import FakeClock, InMemoryCatalog, InMemoryObjectGraph, InMemoryRawDataIndex
from tests.conftest import START
from tests.stores import QueueMoves, Stores, memory_stores, sql_stores

__all__ = ["START", "memory_world", "sql_world"]

S = TaskStatus
ORG, OTHER, THIRD = "org1", "org2", "org3"
GRACE = timedelta(days=1)
DISPATCH_TIMEOUT = timedelta(minutes=10)
RUN_TIMEOUT = timedelta(minutes=30)


def boefje(plugin_id: str = "dns-records", **fields: Any) -> Plugin:
    defaults: dict[str, Any] = {
        "id": plugin_id,
        "type": "boefje",
        "enabled": True,
        "scan_level": 1,
        "consumes": ["Hostname"],
        "produces": [],
    }
    return Plugin(**(defaults | fields))


def hostname(name: str = "example.com", level: int | None = 2) -> OOI:
    reference = f"Hostname|internet|{name}"
    profile = (
        None if level is None else ScanProfile(level=level, reference=reference, scan_profile_type="declared")
    )
    return OOI(primary_key=reference, object_type="Hostname", scan_profile=profile)


def mutation(ooi: OOI, operation: str = "create", org: str = ORG) -> ScanProfileMutation:
    return ScanProfileMutation(
        operation=MutationOperation(operation), primary_key=ooi.primary_key, value=ooi, client_id=org
    )


def deletion(reference: str, org: str = ORG) -> ScanProfileMutation:
    """As Octopoes sends a delete: without the object."""
    return ScanProfileMutation(
        operation=MutationOperation.DELETE, primary_key=reference, value=None, client_id=org
    )


def boefje_meta(
    plugin_id: str, ooi: OOI | None, started_at: datetime | None, ended_at: datetime | None, org: str = ORG
) -> BoefjeMeta:
    return BoefjeMeta(
        id=uuid.uuid4(),
        boefje=Boefje(id=plugin_id),
        input_ooi=ooi.primary_key if ooi is not None else None,
        organization=org,
        started_at=started_at,
        ended_at=ended_at,
    )


def raw_event(
    *mime_types: str, meta: BoefjeMeta | None = None, ended_at: datetime = START - timedelta(hours=1)
) -> RawDataReceivedEvent:
    """A raw file of a dns-records run on example.com (or of `meta`'s run) with the given mime types."""
    meta = meta or boefje_meta("dns-records", hostname(), ended_at - timedelta(minutes=1), ended_at)
    raw = RawData(
        id=uuid.uuid4(), boefje_meta=meta, mime_types=[{"value": m} for m in mime_types or ("text/plain",)]
    )
    return RawDataReceivedEvent(created_at=ended_at, organization=meta.organization, raw_data=raw)


def boefje_data(plugin_id: str, reference: str | None, org: str = ORG) -> dict[str, Any]:
    return BoefjeTask(boefje=Boefje(id=plugin_id), input_ooi=reference, organization=org).model_dump(
        mode="json"
    )


@dataclass
class World:
    """The store ports of one implementation, the in-memory KAT services, and the planners built on them."""

    stores: Stores
    clock: FakeClock
    catalog: InMemoryCatalog = field(default_factory=InMemoryCatalog)
    graph: InMemoryObjectGraph = field(default_factory=InMemoryObjectGraph)
    raw: InMemoryRawDataIndex = field(default_factory=InMemoryRawDataIndex)

    @property
    def engine(self) -> Engine:
        """The database of a world on SQL (a test that needs one belongs in tests/contract)."""
        assert self.stores.engine is not None, "this world keeps its store in memory"
        return self.stores.engine

    @property
    def policies(self) -> dict[str, PushPolicy]:
        """The queue's push policies by scheduler: change them in place."""
        return self.stores.queue.policies

    @property
    def queue(self) -> QueueMoves:
        return self.stores.queue

    @property
    def task_store(self) -> TaskStore:
        return self.stores.tasks

    @property
    def schedule_store(self) -> ScheduleStore:
        return self.stores.schedules

    @property
    def decisions(self) -> DecisionLog:
        return self.stores.decisions

    @property
    def schedule_rows(self) -> ScheduleRegistry:
        return self.stores.registry

    def boefjes(
        self,
        *,
        catalog: PluginCatalog | None = None,
        objects: ObjectGraph | None = None,
        raw_data: RawDataIndex | None = None,
        unplanned: UnplannedEvents | None = None,
        **settings: Any,
    ) -> BoefjePlanner:
        """A boefje planner on the in-memory services, or on those given (e.g. the real clients)."""
        fields = {"grace_period": GRACE, "dispatch_timeout": DISPATCH_TIMEOUT, "run_timeout": RUN_TIMEOUT}
        return BoefjePlanner(
            tasks=self.task_store,
            schedules=self.schedule_store,
            seen=self.stores.seen,
            catalog=catalog or self.catalog,
            objects=objects or self.graph,
            raw_data=raw_data or self.raw,
            clock=self.clock,
            settings=BoefjePlannerSettings(**(fields | settings)),
            uniform=lambda low, high: high,  # the jitter, when there is any, is always its maximum
            decisions=self.decisions,
            unplanned=unplanned,
        )

    def normalizers(
        self,
        *,
        catalog: PluginCatalog | None = None,
        unplanned: UnplannedEvents | None = None,
        **settings: Any,
    ) -> NormalizerPlanner:
        return NormalizerPlanner(
            tasks=self.task_store,
            catalog=catalog or self.catalog,
            clock=self.clock,
            settings=NormalizerPlannerSettings(**settings),
            decisions=self.decisions,
            unplanned=unplanned,
        )

    def reports(self, **settings: Any) -> ReportPlanner:
        fields = {"dispatch_timeout": DISPATCH_TIMEOUT, "run_timeout": RUN_TIMEOUT} | settings
        return ReportPlanner(
            tasks=self.task_store,
            schedules=self.schedule_store,
            clock=self.clock,
            settings=ReportPlannerSettings(**fields),
        )

    def add_plugin(self, plugin: Plugin, *orgs: str) -> Plugin:
        for org in orgs or (ORG,):
            self.catalog.add_plugin(org, plugin)
        return plugin

    def add_object(self, ooi: OOI, *orgs: str) -> OOI:
        for org in orgs or (ORG,):
            self.graph.add(org, ooi)
        return ooi

    def push_manual(self, scheduler: str, priority: int, data: dict[str, Any], org: str = ORG) -> Task:
        """A push by hand (API, CLI): no rank facts, so re-ranking keeps its priority."""
        (outcome,) = self.task_store.push_many([TaskDraft(scheduler, org, priority, data)])
        assert outcome.result is PushResult.PUSHED and outcome.task is not None, outcome
        return outcome.task

    def queued(self, scheduler: str = "boefje") -> list[Task]:
        return self.queue.peek(scheduler, limit=10_000)

    def all_tasks(self, scheduler: str = "boefje") -> list[Task]:
        return self.stores.all_tasks(scheduler)

    def schedule_of(self, task: Task) -> Schedule | None:
        assert task.hash is not None
        return self.schedule_rows.by_hash(task.hash)

    def schedules(self, scheduler: str = "boefje") -> list[Schedule]:
        return self.stores.all_schedules(scheduler)

    def sweep_expired_leases(self, scheduler: str) -> list[uuid.UUID]:
        now = self.clock.now()
        return self.stores.housekeeping.sweep_expired_leases(
            scheduler, now, DISPATCH_TIMEOUT, RUN_TIMEOUT, LEASE_EXPIRED
        )

    def finish(self, task: Task, status: TaskStatus = S.COMPLETED) -> Task:
        """Pop the task (it must be the best queued one) and move it to `status`."""
        popped = self.queue.pop(task.scheduler_id)
        assert [t.id for t in popped] == [task.id]
        return popped[0] if status is S.DISPATCHED else self.queue.set_status(task.id, status)


def _with_organisations(world: World) -> World:
    for org in (ORG, OTHER, THIRD):
        world.catalog.add_organisation(Organisation(id=org))
    return world


def memory_world(clock: FakeClock) -> World:
    """The planner unit tests' world: the store in memory, and three organisations."""
    return _with_organisations(World(memory_stores(clock), clock))


def sql_world(engine: Engine, clock: FakeClock) -> World:
    """The same world on a database, for the tests that are about the database or the real services."""
    return _with_organisations(World(sql_stores(engine, clock), clock))
