"""The planners' store (`katsched.store.lookups`, `.bulk_push`, `.plugins_seen`) on a real SQLite file and on
PostgreSQL, and the world the other planner tests share: the real store with in-memory KAT services."""

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, delete, func, select

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
    NewRank,
    ObjectGraph,
    PluginCatalog,
    PushResult,
    RawDataIndex,
    ScheduleLink,
    TaskDraft,
)
from katsched.errors import InvalidItem, StorageError
from katsched.schedulers.boefje import BoefjePlanner
from katsched.schedulers.boefje_plan import BoefjePlannerSettings
from katsched.schedulers.normalizer import NormalizerPlanner, NormalizerPlannerSettings
from katsched.schedulers.report import ReportPlanner, ReportPlannerSettings
from katsched.schedulers.unplanned import UnplannedEvents
from katsched.store.decisions import SqlDecisionLog
from katsched.store.lookups import SqlScheduleStore, SqlTaskStore
from katsched.store.migrate import MIGRATIONS, upgrade
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.queue import TaskQuery, TaskQueue
from katsched.store.schedules import ScheduleQuery, ScheduleStore
from katsched.store.tables import plugins_seen, task_events
from katsched.testing import FakeClock, InMemoryCatalog, InMemoryObjectGraph, InMemoryRawDataIndex
from tests.conftest import START

S = TaskStatus
ORG, OTHER, THIRD = "org1", "org2", "org3"
GRACE = timedelta(days=1)
DISPATCH_TIMEOUT = timedelta(minutes=10)
RUN_TIMEOUT = timedelta(minutes=30)


# -- the world the planner tests share -----------------------------------------------------------------------


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
    """The real store on the test's database, the in-memory KAT services, and the planners built on them."""

    engine: Engine
    clock: FakeClock
    catalog: InMemoryCatalog = field(default_factory=InMemoryCatalog)
    graph: InMemoryObjectGraph = field(default_factory=InMemoryObjectGraph)
    raw: InMemoryRawDataIndex = field(default_factory=InMemoryRawDataIndex)
    policies: dict[str, PushPolicy] = field(default_factory=dict)

    @property
    def queue(self) -> TaskQueue:
        return TaskQueue(self.engine, self.clock, self.policies)

    @property
    def task_store(self) -> SqlTaskStore:
        return SqlTaskStore(self.queue)

    @property
    def schedule_store(self) -> SqlScheduleStore:
        return SqlScheduleStore(self.engine, self.clock)

    @property
    def decisions(self) -> SqlDecisionLog:
        return SqlDecisionLog(self.engine)

    @property
    def schedule_rows(self) -> ScheduleStore:
        return ScheduleStore(self.engine, self.clock)

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
            seen=SqlSeenPlugins(self.engine),
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

    def queued(self, scheduler: str = "boefje") -> list[Task]:
        return self.queue.peek(scheduler, limit=10_000)

    def all_tasks(self, scheduler: str = "boefje") -> list[Task]:
        return self.queue.list_tasks(TaskQuery(scheduler_id=scheduler, limit=None)).tasks

    def schedule_of(self, task: Task) -> Schedule | None:
        assert task.hash is not None
        return self.schedule_rows.by_hash(task.hash)

    def schedules(self, scheduler: str = "boefje") -> list[Schedule]:
        return self.schedule_rows.list_schedules(ScheduleQuery(scheduler_id=scheduler, limit=None)).schedules

    def finish(self, task: Task, status: TaskStatus = S.COMPLETED) -> Task:
        """Pop the task (it must be the best queued one) and move it to `status`."""
        popped = self.queue.pop(task.scheduler_id)
        assert [t.id for t in popped] == [task.id]
        return popped[0] if status is S.DISPATCHED else self.queue.set_status(task.id, status)


@pytest.fixture
def world(engine: Engine, clock: FakeClock) -> World:
    with engine.begin() as connection:  # the shared PostgreSQL database keeps this table between tests
        connection.execute(delete(plugins_seen))
    built = World(engine, clock)
    for org in (ORG, OTHER, THIRD):
        built.catalog.add_organisation(Organisation(id=org))
    return built


# -- the store -----------------------------------------------------------------------------------------------


def draft(reference: str, org: str = ORG, priority: int = 10, link: ScheduleLink | None = None) -> TaskDraft:
    return TaskDraft("boefje", org, priority, boefje_data("dns-records", reference, org), schedule=link)


def test_push_many_queues_each_draft_in_one_transaction_with_its_history(world: World) -> None:
    outcomes = world.task_store.push_many([draft("a"), draft("b", org=OTHER, priority=3)])
    assert [o.result for o in outcomes] == [PushResult.PUSHED, PushResult.PUSHED]
    queued = world.queued()
    assert [(t.organisation, t.priority, t.data["input_ooi"]) for t in queued] == [
        (OTHER, 3, "b"),
        (ORG, 10, "a"),
    ]
    for task, outcome in zip(reversed(queued), outcomes, strict=True):
        assert outcome.task == task
        assert str(task.id) == task.data["id"]
        assert task.created_at == task.modified_at == world.clock.now()
        assert [status for status, _, _ in world.queue.history(task.id)] == [S.QUEUED]
    assert world.task_store.push_many([]) == []


def test_push_many_refuses_queued_duplicates_also_within_the_batch(world: World) -> None:
    world.task_store.push_many([draft("a")])
    outcomes = world.task_store.push_many([draft("a", priority=2), draft("b"), draft("b")])
    assert [o.result for o in outcomes] == [
        PushResult.ALREADY_QUEUED,
        PushResult.PUSHED,
        PushResult.ALREADY_QUEUED,
    ]
    assert len(world.queued()) == 2


def test_push_many_follows_the_push_policy_and_keeps_the_queued_id(world: World) -> None:
    world.policies["boefje"] = PushPolicy(allow_priority_updates=True)
    first = world.task_store.push_many([draft("a", priority=10)])[0].task
    assert first is not None
    again = world.task_store.push_many([draft("a", priority=4)])[0]
    assert again.result is PushResult.PUSHED and again.task is not None
    assert again.task.id == first.id and again.task.data["id"] == str(first.id) and again.task.priority == 4
    assert [t.priority for t in world.queued()] == [4]


def test_push_many_counts_the_batch_against_maxsize_but_not_manual_tasks(world: World) -> None:
    world.policies["boefje"] = PushPolicy(maxsize=2)
    world.task_store.push_many([draft("a")])
    outcomes = world.task_store.push_many([draft("b"), draft("c"), draft("d", priority=1)])
    assert [o.result for o in outcomes] == [PushResult.PUSHED, PushResult.QUEUE_FULL, PushResult.PUSHED]


def test_push_many_creates_or_links_schedules(world: World) -> None:
    deadline = world.clock.now() + GRACE
    existing = world.schedule_rows.create(
        "boefje", ORG, boefje_data("dns-records", "b"), None, schedule="5 * * * *"
    )
    outcomes = world.task_store.push_many(
        [
            draft("a", link=ScheduleLink(None, deadline, cron="0 0 * * *")),
            draft("b", link=ScheduleLink(existing.id, deadline)),
            draft("c"),
        ]
    )
    created, linked, plain = (o.task for o in outcomes)
    assert created is not None and linked is not None and plain is not None
    new_schedule = world.schedule_of(created)
    assert new_schedule is not None and created.schedule_id == new_schedule.id
    assert (new_schedule.organisation, new_schedule.data, new_schedule.enabled) == (ORG, created.data, True)
    assert (new_schedule.schedule, new_schedule.deadline_at) == ("0 0 * * *", deadline)
    assert linked.schedule_id == existing.id
    relinked = world.schedule_rows.get(existing.id)
    assert (relinked.deadline_at, relinked.schedule) == (deadline, "5 * * * *")  # no cron given: kept
    assert plain.schedule_id is None and world.schedule_of(plain) is None


def test_a_failing_batch_leaves_nothing_behind(world: World) -> None:
    taken = world.schedule_rows.create("boefje", ORG, {}, "0" * 32)
    bad = TaskDraft(
        "boefje", ORG, 10, boefje_data("dns-records", "b"), schedule=ScheduleLink(uuid.uuid4(), None)
    )
    with pytest.raises(StorageError):  # the linked schedule does not exist: the foreign key refuses
        world.task_store.push_many([draft("a", link=ScheduleLink(None, None)), bad])
    assert world.queued() == [] and world.schedules() == [taken]
    with pytest.raises(InvalidItem):  # a draft the queue would refuse is a planner bug, not a skip
        world.task_store.push_many([TaskDraft("boefje", ORG, 10, {"input_ooi": "x"})])


def test_latest_by_hash_is_the_newest_task_of_each_hash_in_its_scheduler(world: World) -> None:
    store = world.task_store
    old = store.push_many([draft("a")])[0].task
    assert old is not None and old.hash is not None
    world.finish(old)
    world.clock.advance(minutes=1)
    new = store.push_many([draft("a")])[0].task
    assert new is not None
    report = TaskDraft("report", ORG, 5, {"report_recipe_id": "r", "organisation_id": ORG})
    report_task = store.push_many([report])[0].task
    assert report_task is not None and report_task.hash is not None
    found = store.latest_by_hash("boefje", [old.hash, report_task.hash, "nothing"])
    assert list(found) == [old.hash] and found[old.hash].id == new.id
    assert store.latest_by_hash("report", [report_task.hash])[report_task.hash].id == report_task.id
    assert store.latest_by_hash("boefje", []) == {}


def test_cancel_queued_for_object_cancels_only_that_organisations_queued_tasks(world: World) -> None:
    store = world.task_store
    mine, elsewhere, other_object = (
        o.task for o in store.push_many([draft("a"), draft("a", org=OTHER), draft("b")])
    )
    assert mine is not None and elsewhere is not None and other_object is not None
    assert store.cancel_queued_for_object("boefje", ORG, "a", "ooi_deleted") == [mine.id]
    assert world.queue.get(mine.id).status is S.CANCELLED
    assert world.queue.history(mine.id)[-1][2] == "ooi_deleted"
    assert {t.id for t in world.queued()} == {elsewhere.id, other_object.id}


def ranked(reference: str, rerank_in: timedelta | None, world: World, org: str = ORG) -> TaskDraft:
    now = world.clock.now()
    rerank_at = now + rerank_in if rerank_in is not None else None
    return replace(draft(reference, org), last_run_at=now - timedelta(days=1), rerank_at=rerank_at)


def test_ranks_due_are_the_queued_tasks_whose_rerank_time_passed_longest_due_first(world: World) -> None:
    store = world.task_store
    outcomes = store.push_many(
        [
            ranked("soon", timedelta(minutes=5), world),
            ranked("sooner", timedelta(minutes=1), world),
            ranked("later", timedelta(hours=1), world),
            ranked("never", None, world),
            ranked("elsewhere", timedelta(minutes=1), world, org=OTHER),
            draft("manual"),
        ]
    )
    soon, sooner, later, *_ = (o.task for o in outcomes)
    assert soon is not None and sooner is not None and later is not None
    world.clock.advance(minutes=10)
    due = store.ranks_due("boefje", ORG, world.clock.now(), limit=10)
    assert [r.task_id for r in due] == [sooner.id, soon.id]
    assert due[0].last_run_at == world.clock.now() - timedelta(days=1, minutes=10)
    assert due[0].priority == 10 and due[0].created_at == sooner.created_at
    assert [r.task_id for r in store.ranks_due("boefje", ORG, world.clock.now(), limit=1)] == [sooner.id]
    world.queue.pop("boefje", limit=10)  # a popped task is no longer re-ranked
    assert store.ranks_due("boefje", ORG, world.clock.now(), limit=10) == []


def test_set_ranks_changes_only_tasks_still_queued(world: World) -> None:
    store = world.task_store
    a, b = (o.task for o in store.push_many([draft("a", priority=10), draft("b", priority=20)]))
    assert a is not None and b is not None
    world.queue.pop("boefje")  # takes a
    world.clock.advance(minutes=1)
    at = world.clock.now() + timedelta(hours=1)
    assert store.set_ranks({a.id: NewRank(5, at), b.id: NewRank(7, at)}) == 1
    assert world.queue.get(a.id).priority == 10 and world.queue.get(b.id).priority == 7
    assert world.queue.get(b.id).modified_at == world.clock.now()
    assert [r.task_id for r in store.ranks_due("boefje", ORG, at, limit=10)] == [b.id]
    world.clock.advance(minutes=1)
    store.set_ranks({b.id: NewRank(7, None)})  # the same priority: not a modification
    assert world.queue.get(b.id).modified_at == world.clock.now() - timedelta(minutes=1)
    assert store.ranks_due("boefje", ORG, at, limit=10) == []
    assert store.set_ranks({}) == 0


def test_raw_file_planned_matches_the_raw_file_not_just_the_hash(world: World) -> None:
    event = raw_event()
    other_file = raw_event(meta=event.raw_data.boefje_meta)  # the same boefje run, another file
    data = {"normalizer": {"id": "kat_dns"}, "raw_data": event.raw_data.model_dump(mode="json")}
    task = world.task_store.push_many([TaskDraft("normalizer", ORG, 10, data)])[0].task
    assert task is not None and task.hash is not None
    assert world.task_store.raw_file_planned([task.hash], event.raw_data.id) == {task.hash}
    assert world.task_store.raw_file_planned([task.hash], other_file.raw_data.id) == set()


def test_schedule_lookups_deadlines_and_disabling(world: World) -> None:
    rows, store = world.schedule_rows, world.schedule_store
    a = rows.create("boefje", ORG, {}, "a" * 32, deadline_at=world.clock.now())
    b = rows.create("boefje", ORG, {}, "b" * 32)
    assert store.by_hashes(["a" * 32, "b" * 32, "c" * 32]) == {"a" * 32: a, "b" * 32: b}
    later = world.clock.now() + timedelta(hours=3)
    world.clock.advance(seconds=1)
    store.set_deadlines({a.id: later, b.id: None})
    assert rows.get(a.id).deadline_at == later and rows.get(a.id).modified_at == world.clock.now()
    store.disable([a.id])
    assert rows.get(a.id).enabled is False and rows.get(b.id).enabled is True
    store.set_deadlines({})
    store.disable([])


def test_seen_plugins_are_kept_per_organisation(world: World) -> None:
    seen = SqlSeenPlugins(world.engine)
    seen.mark_seen(ORG, ["a", "b"], world.clock.now())
    seen.mark_seen(ORG, ["b", "c"], world.clock.now())  # b again: no conflict
    seen.mark_seen(OTHER, ["a"], world.clock.now())
    seen.mark_seen(OTHER, [], world.clock.now())
    assert seen.seen(ORG) == {"a", "b", "c"} and seen.seen(OTHER) == {"a"} and seen.seen(THIRD) == set()
    seen.forget(ORG, ["a", "x"])
    seen.forget(ORG, [])
    assert seen.seen(ORG) == {"b", "c"} and SqlSeenPlugins(world.engine).seen(OTHER) == {"a"}


def test_migration_0002_goes_down_and_up(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the shared PostgreSQL database stays at head for the other tests")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    command.downgrade(config, "0001")
    with engine.connect() as connection:
        assert not engine.dialect.has_table(connection, "plugins_seen")
    upgrade(engine)
    SqlSeenPlugins(engine).mark_seen(ORG, ["a"], datetime.now().astimezone())
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(plugins_seen)).scalar_one() == 1
        assert connection.execute(select(func.count()).select_from(task_events)).scalar_one() == 0
