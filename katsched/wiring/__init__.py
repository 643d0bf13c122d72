"""The composition root: every object katsched runs is built here, from Settings, and nowhere else.

`katsched.daemon` asks it for the store, the KAT clients, the planners, the API and the recurring jobs and
then only runs them (start order, supervision, signals, sd_notify); the CLI asks it for the engine, the
queue, the explainer and the API app. Everything else receives what it needs in its constructor.

Light at import, like the CLI's modules (see "Lazy imports" in docs/architecture.md): what only the daemon,
the API or the explainer need (FastAPI, APScheduler, pika, httpx, the planners) is imported by the function
that builds it, so that `katsched queue ls` does not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from katsched.core.models import PushPolicy, SchedulerKind
from katsched.wiring._jobs import (
    ONCE_ONLY_JOBS,
    ONCE_ONLY_LEASE,
    build_recurring,
    job_intervals,
    organisation_jobs,
)
from katsched.wiring._services import KAT_SERVICES, HealthCheck, Services, build_services, static_catalogue

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

    from katsched.clock import Clock
    from katsched.config import SchedulerSettings, Settings
    from katsched.intake import Batch, Handler, QueueConsumer
    from katsched.schedulers.boefje import BoefjePlanner
    from katsched.schedulers.boefje_plan import BoefjePlannerSettings
    from katsched.schedulers.explain import Explainer
    from katsched.schedulers.normalizer import NormalizerPlanner
    from katsched.schedulers.report import ReportPlanner
    from katsched.schedulers.sweeps import LeaseTimeouts
    from katsched.schedulers.unplanned import UnplannedEvents
    from katsched.store.daemon_state import DaemonStateStore
    from katsched.store.leases import SqlJobLeases
    from katsched.store.maintenance import SqlHousekeeping
    from katsched.store.queue import SqlTaskQueue
    from katsched.store.schedules import SqlScheduleStore
    from katsched.store.sqlite_lock import SqliteDaemonLock
    from katsched.store.wal import WalCheckpointer

__all__ = [
    "KAT_SERVICES",
    "ONCE_ONLY_JOBS",
    "ONCE_ONLY_LEASE",
    "Core",
    "HealthCheck",
    "Planners",
    "Services",
    "build_app",
    "build_core",
    "build_planners",
    "build_recurring",
    "build_services",
    "consumers",
    "engine_for",
    "hold_database",
    "job_intervals",
    "lease_timeouts",
    "open_engine",
    "organisation_jobs",
    "push_policies",
    "static_catalogue",
    "task_queue",
    "wal_checkpointer",
]


# -- the store -----------------------------------------------------------------------------------------------


def engine_for(settings: Settings, *, read_only: bool = False, serving: bool = False) -> Engine:
    """The engine for the configured database, as it is (`read_only`: one connection that never writes;
    `serving`: for a process that runs `wal_checkpointer`, so that SQLite checkpoints inside a commit only
    as a backstop)."""
    from katsched.store.engine import build_engine
    from katsched.store.wal import BACKSTOP_PAGES

    database = settings.database
    if read_only:
        return build_engine(
            database.url, busy_timeout_ms=database.busy_timeout_ms, pool_size=1, read_only=True
        )
    return build_engine(
        database.url,
        busy_timeout_ms=database.busy_timeout_ms,
        pool_size=database.pool_size,
        sqlite_cache_mib=database.sqlite_cache_mib,
        wal_autocheckpoint_pages=BACKSTOP_PAGES if serving else None,
    )


def open_engine(settings: Settings, *, serving: bool = False) -> Engine:
    """The engine for the configured database, created if need be and migrated to the newest schema."""
    from katsched.store.migrate import upgrade

    engine = engine_for(settings, serving=serving)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def wal_checkpointer(settings: Settings) -> WalCheckpointer | None:
    """For a serving process on a SQLite file: the log's checkpoints off the request path. None otherwise."""
    from katsched.store.engine import sqlite_file
    from katsched.store.wal import WalCheckpointer

    file = sqlite_file(settings.database.url)
    return None if file is None else WalCheckpointer(file)


def hold_database(settings: Settings, hostname: str, pid: int, now: datetime) -> SqliteDaemonLock | None:
    """On SQLite, the file's daemon lock: a second daemon on the file is refused (`StartupError`, naming the
    holder). None on PostgreSQL, where several daemons share the database."""
    from katsched.store.engine import sqlite_file
    from katsched.store.sqlite_lock import Holder, hold

    file = sqlite_file(settings.database.url)
    return None if file is None else hold(file, Holder(hostname, pid, now))


def push_policies(settings: Settings) -> dict[str, PushPolicy]:
    return {
        kind.value: PushPolicy(
            allow_replace=scheduler.allow_replace,
            allow_updates=scheduler.allow_updates,
            allow_priority_updates=scheduler.allow_priority_updates,
            maxsize=scheduler.maxsize,
        )
        for kind, scheduler in _schedulers(settings)
    }


def lease_timeouts(settings: Settings) -> dict[str, LeaseTimeouts]:
    """Each scheduler's leases and dispatch-expiry policy, as the sweep applies them."""
    from katsched.schedulers.sweeps import LeaseTimeouts

    return {
        kind.value: LeaseTimeouts(
            timedelta(seconds=scheduler.dispatch_timeout),
            timedelta(seconds=scheduler.run_timeout),
            scheduler.on_dispatch_expiry,
            scheduler.max_attempts,
        )
        for kind, scheduler in _schedulers(settings)
    }


def _schedulers(settings: Settings) -> list[tuple[SchedulerKind, SchedulerSettings]]:
    return [(kind, settings.scheduler(kind)) for kind in SchedulerKind]


def housekeeping(engine: Engine) -> SqlHousekeeping:
    """The sweeps' and the retention job's store (`katsched db prune` beside the daemon's job)."""
    from katsched.store.maintenance import SqlHousekeeping

    return SqlHousekeeping(engine)


def task_queue(settings: Settings, engine: Engine, clock: Clock) -> SqlTaskQueue:
    from katsched.store.queue import SqlTaskQueue

    return SqlTaskQueue(engine, clock, push_policies(settings))


# -- the planners --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planners:
    boefje: BoefjePlanner
    normalizer: NormalizerPlanner
    report: ReportPlanner
    explainer: Explainer
    unplanned: UnplannedEvents


def schedule_store(engine: Engine, clock: Clock) -> SqlScheduleStore:
    """The schedules: the planners' view of them and the API's and CLI's rows."""
    from katsched.store.schedules import SqlScheduleStore

    return SqlScheduleStore(engine, clock)


def boefje_planner_settings(settings: Settings) -> BoefjePlannerSettings:
    from katsched.schedulers.boefje_plan import BoefjePlannerSettings

    boefje = settings.schedulers.boefje
    return BoefjePlannerSettings(
        grace_period=timedelta(seconds=boefje.grace_period),
        dispatch_timeout=timedelta(seconds=boefje.dispatch_timeout),
        run_timeout=timedelta(seconds=boefje.run_timeout),
        ranker=boefje.ranker,
        deadline_jitter=timedelta(seconds=boefje.deadline_jitter),
        lookup_concurrency=boefje.lookup_concurrency,
        reschedule_batch_size=settings.recurring.reschedule_batch_size,
        claim_lease=timedelta(seconds=settings.recurring.schedule_claim_lease),
        configs_cache_ttl=timedelta(seconds=settings.katalogus.cache_ttl),
    )


def build_planners(
    settings: Settings,
    queue: SqlTaskQueue,
    clock: Clock,
    services: Services,
    known_organisations: Callable[[], Collection[str]] = frozenset,
) -> Planners:
    from katsched.schedulers.boefje import BoefjePlanner
    from katsched.schedulers.explain import Explainer
    from katsched.schedulers.normalizer import NormalizerPlanner, NormalizerPlannerSettings
    from katsched.schedulers.report import ReportPlanner, ReportPlannerSettings
    from katsched.schedulers.unplanned import UnplannedEvents
    from katsched.store.decisions import SqlDecisionLog
    from katsched.store.lookups import SqlTaskStore
    from katsched.store.plugins_seen import SqlSeenPlugins

    engine = queue.engine
    tasks, schedules, decisions = SqlTaskStore(queue), schedule_store(engine, clock), SqlDecisionLog(engine)
    unplanned = UnplannedEvents(clock, known_organisations=known_organisations)
    boefje = BoefjePlanner(
        tasks=tasks,
        clock=clock,
        schedules=schedules,
        seen=SqlSeenPlugins(engine),
        catalog=services.catalog,
        objects=services.objects,
        raw_data=services.raw_data,
        settings=boefje_planner_settings(settings),
        decisions=decisions,
        unplanned=unplanned,
    )
    normalizer = NormalizerPlanner(
        tasks=tasks,
        clock=clock,
        catalog=services.catalog,
        settings=NormalizerPlannerSettings(ranker=settings.schedulers.normalizer.ranker),
        decisions=decisions,
        unplanned=unplanned,
    )
    report = settings.schedulers.report
    report_settings = ReportPlannerSettings(
        dispatch_timeout=timedelta(seconds=report.dispatch_timeout),
        run_timeout=timedelta(seconds=report.run_timeout),
        ranker=report.ranker,
        reschedule_batch_size=settings.recurring.reschedule_batch_size,
        claim_lease=timedelta(seconds=settings.recurring.schedule_claim_lease),
    )
    explainer = Explainer(
        boefjes=boefje,
        normalizers=normalizer,
        catalog=services.catalog,
        objects=services.objects,
        tasks=tasks,
        schedules=schedules,
        decisions=decisions,
        clock=clock,
    )
    return Planners(
        boefje=boefje,
        normalizer=normalizer,
        report=ReportPlanner(tasks=tasks, clock=clock, schedules=schedules, settings=report_settings),
        explainer=explainer,
        unplanned=unplanned,
    )


# -- what the daemon, `katsched api` and `katsched explain` share ------------------------------------------


@dataclass(frozen=True)
class Core:
    """The store, the KAT clients and the planners over them; `close()` releases clients and engine."""

    settings: Settings
    clock: Clock
    queue: SqlTaskQueue
    schedules: SqlScheduleStore
    services: Services
    planners: Planners

    @property
    def engine(self) -> Engine:
        return self.queue.engine

    @property
    def housekeeping(self) -> SqlHousekeeping:
        return housekeeping(self.engine)

    @property
    def daemon_states(self) -> DaemonStateStore:
        """Where each daemon registers itself and writes its heartbeat."""
        from katsched.store.daemon_state import DaemonStateStore

        return DaemonStateStore(self.engine)

    @property
    def job_leases(self) -> SqlJobLeases:
        """Which daemon runs the jobs that must run once (see `wiring._jobs.ONCE_ONLY_JOBS`)."""
        from katsched.store.leases import SqlJobLeases

        return SqlJobLeases(self.engine)

    def register_daemon(self, instance_id: str, hostname: str, pid: int, *, sole: bool = False) -> None:
        """This daemon's row in the daemon states, written afresh at start. `sole`: it holds the database
        alone (SQLite's daemon lock), so every other daemon with a row not marked stopped, or a job lease,
        died: its row is marked stopped and its leases are freed at once, not after they lapse."""
        from katsched import __version__
        from katsched.store.daemon_state import DaemonState

        now = self.clock.now()
        state = DaemonState(instance_id, hostname, pid, __version__, now, now)
        self.daemon_states.register(state, sole=sole)
        for lease in self.job_leases.leases() if sole else []:
            if lease.holder != instance_id:
                self.job_leases.release(lease.name, lease.holder)

    def schema_revision(self) -> str | None:
        from katsched.store.migrate import current_revision

        return current_revision(self.engine)

    def close(self) -> None:
        self.services.close()
        self.engine.dispose()


def build_core(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    known_organisations: Callable[[], Collection[str]] = frozenset,
) -> Core:
    """Everything over an open engine; no I/O (the KAT clients connect on first use)."""
    queue = task_queue(settings, engine, clock)
    services = build_services(settings, clock)
    planners = build_planners(settings, queue, clock, services, known_organisations)
    return Core(settings, clock, queue, schedule_store(engine, clock), services, planners)


def build_app(
    core: Core,
    *,
    health: Callable[[], Mapping[str, str]] = dict,
    intake: Callable[[], Mapping[str, str]] | None = None,
    instance: str | None = None,
) -> FastAPI:
    """The HTTP API over `core`, `/explain` included. `/health` reads the last answer of each configured
    service from `health()` (the daemon's metrics job refreshes it, so a slow service never slows `/health`
    down); a service not probed yet is "unknown", not down. `intake()`: the consumers' states. `/health` lists
    the daemons on the database; `instance` is the one this API runs in (None: `katsched api` alone)."""
    from katsched.api import create_app
    from katsched.api.context import Peers
    from katsched.schedulers.manual import ManualPushes
    from katsched.store.daemon_state import stale_after

    settings, clock = core.settings, core.clock

    def probe(name: str) -> HealthCheck:
        return lambda: {"ok": True, "down": False}.get(health().get(name, "unknown"))

    return create_app(
        core.queue,
        core.schedules,
        clock,
        token=settings.api.token or None,
        max_body_bytes=settings.api.max_body_bytes,
        health_checks={name: probe(name) for name in KAT_SERVICES if getattr(settings, name).url},
        intake_states=intake,
        peers=Peers(core.daemon_states.live, stale_after(settings.recurring.metrics_interval), instance),
        explainer=core.planners.explainer,
        manual_pushes=ManualPushes(
            core.services.catalog,
            clock,
            boefje_planner_settings(settings),
        ),
    )


# -- the RabbitMQ intake -------------------------------------------------------------------------------------


def consumers(core: Core) -> dict[str, Callable[[], QueueConsumer]]:
    """One consumer factory per configured queue (none when [amqp] is off). Mutations are planned a batch at
    a time (one transaction for many); raw files one by one."""
    from katsched.intake import QueueConsumer, mutation_batches, raw_file_handler

    amqp = core.settings.amqp
    if not amqp.enabled:
        return {}
    handlers: dict[str, Handler | Batch[Any]] = {
        amqp.mutations_queue: mutation_batches(core.planners.boefje),
        amqp.raw_files_queue: raw_file_handler(core.planners.normalizer),
    }

    def factory(queue: str, handler: Handler | Batch[Any]) -> Callable[[], QueueConsumer]:
        return lambda: QueueConsumer(
            amqp.url,
            queue,
            handler,
            prefetch=amqp.prefetch,
            retry_backoff_max=amqp.retry_backoff_max,
            clock=core.clock,
        )

    return {queue: factory(queue, handler) for queue, handler in handlers.items()}
