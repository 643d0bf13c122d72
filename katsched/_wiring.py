"""The daemon's composition helpers: KAT clients, planners and recurring jobs, built from Settings.

Part of the composition root (`katsched.daemon`), split off to keep each module to one concern. Only
`daemon.py` and `katsched explain` (which runs the planners' own decisions, dry) import it.
"""

import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from katsched.api import ApiServer, create_app
from katsched.clock import Clock
from katsched.config import CatalogueSettings, RecurringSettings, Settings
from katsched.core.models import OOI, BoefjeMeta, Organisation, Plugin, PushPolicy
from katsched.core.ports import ObjectGraph, PluginCatalog, RawDataIndex
from katsched.errors import ServiceUnavailable
from katsched.intake import QueueConsumer
from katsched.kat.bytes import BytesClient
from katsched.kat.http import ServiceHttp, build_client
from katsched.kat.katalogus import KatalogusClient, StaticCatalogue
from katsched.kat.octopoes import OctopoesClient
from katsched.recurring import GlobalJob, JobResult, OrganisationJob
from katsched.schedulers.boefje import BoefjePlanner
from katsched.schedulers.boefje_plan import BoefjePlannerSettings
from katsched.schedulers.explain import Explainer
from katsched.schedulers.manual import ManualPushes
from katsched.schedulers.normalizer import NormalizerPlanner, NormalizerPlannerSettings
from katsched.schedulers.report import ReportPlanner, ReportPlannerSettings
from katsched.schedulers.summary import PlanSummary
from katsched.schedulers.sweeps import LeaseTimeouts
from katsched.schedulers.unplanned import UnplannedEvents
from katsched.store.decisions import SqlDecisionLog
from katsched.store.lookups import SqlScheduleStore, SqlTaskStore
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.queue import TaskQueue
from katsched.store.schedules import ScheduleStore

log = logging.getLogger("katsched.daemon")

HealthCheck = Callable[[], bool | None]


class NoObjectGraph:
    """Where no Octopoes is configured: every question is deferred, never answered with "absent" (which
    would disable the schedules of objects that may well exist)."""

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable("octopoes is not configured ([octopoes] url is empty)")

    def objects(
        self,
        organisation_id: str,
        object_types: Collection[str],
        scan_levels: Collection[int] | None = None,
        *,
        valid_time: datetime,
    ) -> Iterator[OOI]:
        raise self._unavailable()

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None:
        raise self._unavailable()

    def object_clients(
        self, reference: str, organisation_ids: Collection[str], *, valid_time: datetime
    ) -> dict[str, OOI]:
        raise self._unavailable()


class NoRawData:
    """Where no Bytes is configured: last runs are known from our own history only."""

    def last_run(self, boefje_id: str, input_ooi: str | None, organization: str) -> BoefjeMeta | None:
        return None

    def last_runs(
        self, input_ooi: str | None, organization: str, boefje_ids: Collection[str]
    ) -> dict[str, BoefjeMeta]:
        return {}


@dataclass
class Services:
    catalog: PluginCatalog
    objects: ObjectGraph
    raw_data: RawDataIndex
    checks: dict[str, HealthCheck] = field(default_factory=dict)  # configured services only
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def static_catalogue(catalogue: CatalogueSettings) -> StaticCatalogue:
    organisations = [Organisation(id=org.id, name=org.name) for org in catalogue.organisations]
    plugins = [Plugin(**plugin.model_dump(exclude={"organisations"})) for plugin in catalogue.plugins]
    enabled_for = {plugin.id: plugin.organisations for plugin in catalogue.plugins if plugin.organisations}
    return StaticCatalogue(organisations, plugins, enabled_for)


def build_services(settings: Settings, clock: Clock) -> Services:
    """The KAT clients; an empty URL means a static catalogue, no object graph, no Bytes. No I/O here."""
    services = Services(
        catalog=static_catalogue(settings.catalogue), objects=NoObjectGraph(), raw_data=NoRawData()
    )
    if settings.katalogus.url:
        http = ServiceHttp(
            "katalogus", build_client(settings.katalogus.url, timeout=settings.katalogus.timeout)
        )
        katalogus = KatalogusClient(http, clock=clock, cache_ttl=settings.katalogus.cache_ttl)
        services.catalog = katalogus
        services.checks["katalogus"] = katalogus.healthy
        services.closers.append(katalogus.close)
    if settings.octopoes.url:
        http = ServiceHttp("octopoes", build_client(settings.octopoes.url, timeout=settings.octopoes.timeout))
        octopoes = OctopoesClient(http)
        services.objects = octopoes
        services.checks["octopoes"] = _octopoes_check(octopoes, services.catalog)
        services.closers.append(octopoes.close)
    if settings.bytes.url:
        http = ServiceHttp("bytes", build_client(settings.bytes.url, timeout=settings.bytes.timeout))
        raw = BytesClient(http, username=settings.bytes.username, password=settings.bytes.password)
        services.raw_data = raw
        services.checks["bytes"] = raw.healthy
        services.closers.append(raw.close)
    return services


def _octopoes_check(octopoes: OctopoesClient, catalog: PluginCatalog) -> HealthCheck:
    """Octopoes answers health per organisation; ask for the first one (None: no organisation to ask)."""

    def check() -> bool | None:
        organisations = catalog.organisations()
        return octopoes.healthy(organisations[0].id) if organisations else None

    return check


@dataclass(frozen=True)
class Planners:
    boefje: BoefjePlanner
    normalizer: NormalizerPlanner
    report: ReportPlanner
    explainer: Explainer
    unplanned: UnplannedEvents


def boefje_planner_settings(settings: Settings) -> BoefjePlannerSettings:
    boefje = settings.schedulers.boefje
    return BoefjePlannerSettings(
        grace_period=timedelta(seconds=boefje.grace_period),
        dispatch_timeout=timedelta(seconds=boefje.dispatch_timeout),
        run_timeout=timedelta(seconds=boefje.run_timeout),
        ranker=boefje.ranker,
        deadline_jitter=timedelta(seconds=boefje.deadline_jitter),
        lookup_concurrency=boefje.lookup_concurrency,
        reschedule_batch_size=settings.recurring.reschedule_batch_size,
        configs_cache_ttl=timedelta(seconds=settings.katalogus.cache_ttl),
    )


def build_planners(
    settings: Settings,
    queue: TaskQueue,
    engine: Engine,
    clock: Clock,
    services: Services,
    known_organisations: Callable[[], Collection[str]] = frozenset,
) -> Planners:
    tasks, schedules = SqlTaskStore(queue), SqlScheduleStore(engine, clock)
    decisions = SqlDecisionLog(engine)
    unplanned = UnplannedEvents(clock, known_organisations=known_organisations)
    report = settings.schedulers.report
    batch = settings.recurring.reschedule_batch_size
    boefje_settings = boefje_planner_settings(settings)
    report_settings = ReportPlannerSettings(
        dispatch_timeout=timedelta(seconds=report.dispatch_timeout),
        run_timeout=timedelta(seconds=report.run_timeout),
        ranker=report.ranker,
        reschedule_batch_size=batch,
    )
    boefje_planner = BoefjePlanner(
        tasks=tasks,
        clock=clock,
        schedules=schedules,
        seen=SqlSeenPlugins(engine),
        catalog=services.catalog,
        objects=services.objects,
        raw_data=services.raw_data,
        settings=boefje_settings,
        decisions=decisions,
        unplanned=unplanned,
    )
    normalizer_planner = NormalizerPlanner(
        tasks=tasks,
        clock=clock,
        catalog=services.catalog,
        settings=NormalizerPlannerSettings(ranker=settings.schedulers.normalizer.ranker),
        decisions=decisions,
        unplanned=unplanned,
    )
    explainer = Explainer(
        boefjes=boefje_planner,
        normalizers=normalizer_planner,
        catalog=services.catalog,
        objects=services.objects,
        tasks=tasks,
        schedules=schedules,
        decisions=decisions,
        clock=clock,
    )
    return Planners(
        boefje=boefje_planner,
        normalizer=normalizer_planner,
        report=ReportPlanner(tasks=tasks, clock=clock, schedules=schedules, settings=report_settings),
        explainer=explainer,
        unplanned=unplanned,
    )


def reported(summary: PlanSummary, organisation: str) -> JobResult:
    """The summary's line at INFO when the run changed something; a quiet run is only a debug line."""
    line = f"{summary.log_line()} org={organisation}"
    if summary.created or summary.cancelled or sum(summary.disabled.values()):
        return line
    log.debug("%s", line)
    return None


def organisation_jobs(
    planners: Planners, recurring: RecurringSettings, objects_known: bool
) -> list[OrganisationJob]:
    """Each organisation's job set. Enumerating objects for new plugins needs Octopoes: without it, none."""
    boefje, report = planners.boefje, planners.report

    def rerank(organisation: str) -> JobResult:
        changed = boefje.rerank_queued(organisation)
        return f"tasks_reranked scheduler=boefje org={organisation} changed={changed}" if changed else None

    jobs = [
        OrganisationJob(
            "boefje.reschedule",
            recurring.reschedule_interval,
            lambda o: reported(boefje.reschedule_due(o), o),
        ),
        OrganisationJob("boefje.rerank", recurring.rank_interval, rerank),
        OrganisationJob(
            "report.reschedule",
            recurring.reschedule_interval,
            lambda o: reported(report.reschedule_due(o), o),
        ),
    ]
    if objects_known:
        jobs.append(
            OrganisationJob(
                "boefje.new_plugins",
                recurring.new_plugins_interval,
                lambda o: reported(boefje.plan_new_plugins(o), o),
            )
        )
    return jobs


def job_intervals(recurring: RecurringSettings) -> dict[str, float]:
    """Interval per job name, for a SIGHUP reload."""
    return {
        "boefje.reschedule": recurring.reschedule_interval,
        "report.reschedule": recurring.reschedule_interval,
        "boefje.rerank": recurring.rank_interval,
        "boefje.new_plugins": recurring.new_plugins_interval,
        "organisations": recurring.organisations_refresh_interval,
        "lease_sweep": recurring.sweep_interval,
        "retention": recurring.prune_interval,
        "metrics": recurring.metrics_interval,
    }


def global_job(
    name: str, recurring: RecurringSettings, run: Callable[[], JobResult], *, first_at_start: bool = False
) -> GlobalJob:
    return GlobalJob(name, job_intervals(recurring)[name], run, first_at_start)


def lease_timeouts(settings: Settings) -> dict[str, LeaseTimeouts]:
    """Each scheduler's leases and dispatch-expiry policy, as the sweep applies them."""
    timeouts = {}
    for name in ("boefje", "normalizer", "report"):
        scheduler = settings.scheduler(name)
        timeouts[name] = LeaseTimeouts(
            timedelta(seconds=scheduler.dispatch_timeout),
            timedelta(seconds=scheduler.run_timeout),
            scheduler.on_dispatch_expiry,
            scheduler.max_attempts,
        )
    return timeouts


def push_policies(settings: Settings) -> dict[str, PushPolicy]:
    policies = {}
    for name in ("boefje", "normalizer", "report"):
        scheduler = settings.scheduler(name)
        policies[name] = PushPolicy(
            allow_replace=scheduler.allow_replace,
            allow_updates=scheduler.allow_updates,
            allow_priority_updates=scheduler.allow_priority_updates,
            maxsize=scheduler.maxsize,
        )
    return policies


class ConsumerComponent:
    def __init__(self, consumer: QueueConsumer, clock: Clock) -> None:
        self.consumer = consumer
        self._clock = clock
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = self.consumer.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        deadline = self._clock.monotonic() + timeout
        self.consumer.stop(timeout)
        if self._thread is not None:  # stop() returns once the connection is closed; the thread ends after
            self._thread.join(max(0.1, deadline - self._clock.monotonic()))
        return not self.alive()


class ApiComponent:
    def __init__(self, server: ApiServer) -> None:
        self.server = server

    def start(self) -> None:
        self.server.start()

    def alive(self) -> bool:
        return self.server.is_alive()

    def stop(self, timeout: float) -> bool:
        self.server.stop(timeout)
        return not self.server.is_alive()


def api_factory(
    settings: Settings,
    queue: TaskQueue,
    schedules: ScheduleStore,
    clock: Clock,
    health: Callable[[], Mapping[str, str]],
    catalog: PluginCatalog,
    intake: Callable[[], Mapping[str, str]],
    explainer: Explainer | None = None,
) -> Callable[[], ApiComponent]:
    """The HTTP API as a supervised component. `/health` reads the last answer of each configured service
    (`health()`, refreshed by the metrics job, which probes once at start), so a slow service never slows
    `/health` down; a service not probed yet is "unknown", not down. `intake()`: the consumers' states."""
    api = settings.api

    def probe(name: str) -> Callable[[], bool | None]:
        return lambda: {"ok": True, "down": False}.get(health().get(name, "unknown"))

    checks = {name: probe(name) for name in ("katalogus", "octopoes", "bytes") if getattr(settings, name).url}

    def build() -> ApiComponent:
        app = create_app(
            queue,
            schedules,
            clock,
            token=api.token or None,
            max_body_bytes=api.max_body_bytes,
            health_checks=checks,
            intake_states=intake,
            explainer=explainer,
            manual_pushes=ManualPushes(
                SqlScheduleStore(queue.engine, clock), catalog, clock, boefje_planner_settings(settings)
            ),
        )
        return ApiComponent(ApiServer(app, api.host, api.port))

    return build
