"""The composition root: builds every component from Settings, starts them in order, supervises them, and
stops them on a signal.

Start order: store (migrated) → KAT clients → planners → HTTP API → recurring jobs → RabbitMQ intake, so that
nothing consumes before the rest can take its work. Stop order: intake first (messages being handled commit
and are acknowledged; the rest go back to the broker), then the recurring jobs (running jobs finish), then the
API (requests in flight finish), all within `DRAIN_TIMEOUT`; then the store closes.

Signals: the first SIGTERM/SIGINT drains and exits 0; a second one exits 1 at once. SIGHUP reloads what is
safe to change while running ([logging], [recurring], [retention], the schedulers' lease timeouts) and logs
which sections need a restart. systemd hears READY, STATUS, STOPPING and WATCHDOG through `$NOTIFY_SOCKET`.
"""

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from katsched import __version__, _wiring
from katsched.api.server import bind
from katsched.clock import Clock, SystemClock
from katsched.config import Settings, load_settings
from katsched.errors import ConfigError, KatschedError
from katsched.intake import Batch, Handler, QueueConsumer, mutation_batches, raw_file_handler
from katsched.logs import configure_logging, secrets_of
from katsched.recurring import JobResult, Recurring
from katsched.schedulers.sweeps import RetentionPolicy, prune_retention, sweep_stalled
from katsched.store.daemon_state import DaemonState, DaemonStateStore
from katsched.store.engine import build_engine
from katsched.store.migrate import current_revision, upgrade
from katsched.store.queue import TaskQueue
from katsched.store.schedules import ScheduleStore
from katsched.supervisor import Component, Fatal, Supervised, Supervisor, log_thread_crashes
from katsched.systemd import Notifier

log = logging.getLogger("katsched.daemon")

DRAIN_TIMEOUT = 20.0  # below the unit's TimeoutStopSec=30, so systemd never has to SIGKILL
TICK = 1.0
RELOAD_SAFE = ("logging", "recurring", "retention")
SCHEDULER_NAMES = ("boefje", "normalizer", "report")


class Signals:
    """First SIGTERM/SIGINT sets `stop`; a second one exits at once. SIGHUP sets `reload`."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            log.warning("daemon_stop_now signal=%s", name)
            _flush_logs()
            os._exit(1)
        log.info("daemon_stopping signal=%s", name)
        self.stop.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload.set()


class Daemon:
    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, notifier: Notifier | None = None
    ) -> None:
        self.settings = settings
        self.config_path = settings.config_path
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.signals = Signals()
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}"
        self.engine: Engine | None = None
        self.supervisor: Supervisor | None = None
        self.recurring: Recurring | None = None
        self.consumers: dict[str, QueueConsumer] = {}
        self.health: dict[str, str] = {}
        self.swept_total = 0
        self.api_address: str | None = None

    # the whole life

    def run(self) -> int:
        """Start, supervise until a signal or a fatal failure, stop. The exit code."""
        self.signals.install()
        log_thread_crashes()
        try:
            self._start()
        except (KatschedError, Fatal) as error:
            log.error("daemon_failed reason=%s", error)
            return self._stop(1)
        return self._stop(self._supervise())

    def _start(self) -> None:
        if self.settings.api.enabled:  # a port in use ends the start at once, before the store is touched
            bind(self.settings.api.host, self.settings.api.port).close()
        engine = self._open_store()
        self.state_store = DaemonStateStore(engine)
        now = self.clock.now()
        hostname, pid = socket.gethostname(), os.getpid()
        self.state_store.register(DaemonState(self.instance_id, hostname, pid, __version__, now, now))
        self.queue = TaskQueue(engine, self.clock, _wiring.push_policies(self.settings))
        self.services = _wiring.build_services(self.settings, self.clock)
        self.planners = _wiring.build_planners(
            self.settings, self.queue, engine, self.clock, self.services, self._known_organisations
        )
        self.supervisor = Supervisor(self._slots(), clock=self.clock)
        self.supervisor.start_all()
        log.info(
            "daemon_ready database=%s revision=%s components=%s",
            engine.url.render_as_string(hide_password=True),
            current_revision(engine),
            ",".join(slot.name for slot in self.supervisor.slots),
        )
        self.notifier.ready(self._status_line())
        self.heartbeat()

    def _open_store(self) -> Engine:
        database = self.settings.database
        self.engine = build_engine(
            database.url,
            busy_timeout_ms=database.busy_timeout_ms,
            pool_size=database.pool_size,
            sqlite_cache_mib=database.sqlite_cache_mib,
        )
        upgrade(self.engine)
        return self.engine

    def _supervise(self) -> int:
        """The main thread's loop: signals, SIGHUP, dead components, the watchdog and the heartbeat."""
        assert self.supervisor is not None
        tick = min(TICK, self.notifier.watchdog_interval or TICK)
        next_beat = self.clock.monotonic() + self.settings.recurring.metrics_interval
        while not self.signals.stop.wait(tick):
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self.reload()
            try:
                self.supervisor.check()
            except Fatal as error:
                log.error("daemon_failed reason=%s", error)
                return 1
            self.notifier.watchdog()
            if self.clock.monotonic() >= next_beat:
                self.heartbeat()
                next_beat = self.clock.monotonic() + self.settings.recurring.metrics_interval
        return 0

    def _stop(self, code: int) -> int:
        """Intake first, then the recurring jobs, then the API, within DRAIN_TIMEOUT; then the store."""
        self.notifier.stopping()
        clean = True
        if self.supervisor is not None:
            log.info("daemon_draining timeout=%.0f", DRAIN_TIMEOUT)
            names = [slot.name for slot in self.supervisor.slots]
            order = [n for n in names if n.startswith("intake-")] + [
                n for n in ("recurring", "api") if n in names
            ]
            clean = self.supervisor.stop_all(DRAIN_TIMEOUT, order=order)
            self._write_state(stopped=True)
        self._close()
        log.info("daemon_stopped clean=%s exit=%d", str(clean).lower(), code)
        if not clean:
            # A job or handler still runs past the bound: its transaction is rolled back when the process
            # ends, and it is redone at the next start. Exiting now keeps the promised bound.
            _flush_logs()
            os._exit(code)
        return code

    def _close(self) -> None:
        services = getattr(self, "services", None)
        if services is not None:
            services.close()
        if self.engine is not None:
            self.engine.dispose()

    # components

    def _slots(self) -> list[Supervised]:
        slots = []
        api = self._api_factory()
        if api is not None:
            slots.append(Supervised("api", api))
        slots.append(Supervised("recurring", self._new_recurring))
        if self.settings.amqp.enabled:
            amqp = self.settings.amqp
            # Mutations are planned a batch at a time (one transaction for many); raw files one by one.
            handlers: dict[str, Handler | Batch[Any]] = {
                amqp.mutations_queue: mutation_batches(self.planners.boefje),
                amqp.raw_files_queue: raw_file_handler(self.planners.normalizer),
            }
            for queue, handler in handlers.items():
                slots.append(Supervised(f"intake-{queue}", self._consumer_factory(queue, handler)))
        return slots

    def _consumer_factory(self, queue: str, handler: Handler | Batch[Any]) -> Callable[[], Component]:
        amqp = self.settings.amqp

        def build() -> Component:
            consumer = QueueConsumer(
                amqp.url,
                queue,
                handler,
                prefetch=amqp.prefetch,
                retry_backoff_max=amqp.retry_backoff_max,
                clock=self.clock,
            )
            self.consumers[queue] = consumer
            return _wiring.ConsumerComponent(consumer, self.clock)

        return build

    def _api_factory(self) -> Callable[[], Component] | None:
        if not self.settings.api.enabled:
            return None
        assert self.engine is not None
        schedules = ScheduleStore(self.engine, self.clock)
        build = _wiring.api_factory(
            self.settings,
            self.queue,
            schedules,
            self.clock,
            lambda: self.health,
            self.services.catalog,
            self.intake_states,
            self.planners.explainer,
        )

        def start_api() -> Component:
            component = build()
            self.api_address = f"{component.server.host}:{component.server.port}"
            return component

        return start_api

    def _new_recurring(self) -> Recurring:
        settings, planners = self.settings, self.planners
        recurring = settings.recurring
        jobs = [
            _wiring.global_job("lease_sweep", recurring, self.sweep),
            _wiring.global_job("retention", recurring, self.prune),
            _wiring.global_job("metrics", recurring, self.refresh_metrics, first_at_start=True),
        ]
        self.recurring = Recurring(
            organisations=lambda: [org.id for org in self.services.catalog.organisations()],
            organisation_jobs=_wiring.organisation_jobs(planners, recurring, bool(settings.octopoes.url)),
            global_jobs=jobs,
            clock=self.clock,
            organisations_interval=recurring.organisations_refresh_interval,
            jitter=recurring.jitter,
        )
        return self.recurring

    # the global jobs

    def sweep(self) -> JobResult:
        assert self.engine is not None
        summary = sweep_stalled(self.engine, self.clock, _wiring.lease_timeouts(self.settings))
        self.swept_total += summary.total
        return summary.log_line() if summary.total else None

    def prune(self) -> JobResult:
        retention = self.settings.retention
        policy = RetentionPolicy(retention.tasks_days, retention.history_days, retention.batch_size)
        assert self.engine is not None
        summary = prune_retention(self.engine, self.clock, policy)
        return summary.log_line() if summary.tasks or summary.history or summary.daemons else None

    def refresh_metrics(self) -> JobResult:
        """Ask each configured KAT service whether it is healthy (network I/O: on a job thread, never on the
        supervising main thread)."""
        health = {}
        for name, check in self.services.checks.items():
            try:
                answer = check()
            except KatschedError:
                answer = False
            health[name] = "unknown" if answer is None else ("ok" if answer else "down")
            if self.health.get(name) not in (None, health[name]):
                log.warning("service_health_changed service=%s health=%s", name, health[name])
        self.health = health
        return None

    # state for `katsched status`

    def heartbeat(self) -> None:
        self._write_state(stopped=False)
        self.notifier.status(self._status_line())

    def _write_state(self, *, stopped: bool) -> None:
        store = getattr(self, "state_store", None)
        if store is None:
            return
        try:
            if stopped:
                store.mark_stopped(self.instance_id, self.clock.now(), self.components())
            else:
                store.heartbeat(self.instance_id, self.clock.now(), self.components())
        except KatschedError as error:
            log.warning("heartbeat_failed error=%s", error)

    def components(self) -> dict[str, Any]:
        recurring = self.recurring
        return {
            "supervisor": self.supervisor.states() if self.supervisor is not None else {},
            "consumers": {queue: _consumer_state(consumer) for queue, consumer in self.consumers.items()},
            "services": self._service_states(),
            "jobs": recurring.summary() if recurring is not None else {},
            "organisations": len(recurring.organisations()) if recurring is not None else 0,
            "swept_total": self.swept_total,
            "unplanned": self._unplanned_counts(),
            "api": {"enabled": self.settings.api.enabled, "address": self.api_address},
        }

    def intake_states(self) -> dict[str, str]:
        """Each configured consumer's state; one not built yet is still connecting."""
        amqp = self.settings.amqp
        if not amqp.enabled:
            return {}
        queues = (amqp.mutations_queue, amqp.raw_files_queue)
        built = dict(self.consumers)
        return {queue: built[queue].state.value if queue in built else "connecting" for queue in queues}

    def _unplanned_counts(self) -> dict[str, int]:
        planners = getattr(self, "planners", None)  # absent when the start failed before the planners
        return planners.unplanned.counts() if planners is not None else {}

    def _known_organisations(self) -> set[str]:
        """The organisations the recurring jobs last found in the catalogue (empty before the first look)."""
        return self.recurring.organisations() if self.recurring is not None else set()

    def _service_states(self) -> dict[str, str]:
        states = {"database": "ok"}
        for name in ("katalogus", "octopoes", "bytes"):
            if name in self.services.checks:
                states[name] = self.health.get(name, "unknown")
            else:
                states[name] = "static" if name == "katalogus" else "not configured"
        return states

    def _status_line(self) -> str:
        organisations = len(self.recurring.organisations()) if self.recurring is not None else 0
        consumers = sum(1 for consumer in self.consumers.values() if consumer.connected)
        return (
            f"running: {organisations} organisations, {consumers}/{len(self.consumers)} consumers connected"
        )

    # SIGHUP

    def reload(self) -> None:
        if self.config_path is None:
            log.info("config_reload_skipped reason=no_config_file")
            return
        self.notifier.reloading()
        try:
            new = load_settings(self.config_path)
        except ConfigError as error:
            log.error("config_reload_failed error=%s", error)
            self.notifier.status(self._status_line())
            return
        needs_restart = [
            name
            for name in type(new).model_fields
            if name not in RELOAD_SAFE and getattr(new, name) != getattr(self.settings, name)
        ]
        lease_only = "schedulers" in needs_restart and _only_lease_changes(self.settings, new)
        update = {name: getattr(new, name) for name in RELOAD_SAFE}
        if lease_only:
            update["schedulers"] = new.schedulers
            needs_restart.remove("schedulers")
        self.settings = self.settings.model_copy(update=update)
        configure_logging(self.settings.logging, secrets=secrets_of(self.settings))
        if self.recurring is not None:
            self.recurring.set_intervals(
                _wiring.job_intervals(self.settings.recurring), self.settings.recurring.jitter
            )
        log.info("config_reloaded restart_needed_for=%s", ",".join(needs_restart) or "-")
        self.notifier.ready(self._status_line())


def _only_lease_changes(old: Settings, new: Settings) -> bool:
    """Only the lease settings differ (the sweep reads them on every run; the planners keep theirs)."""
    ignore = {"dispatch_timeout", "run_timeout", "on_dispatch_expiry", "max_attempts"}
    for name in SCHEDULER_NAMES:
        if old.scheduler(name).model_dump(exclude=ignore) != new.scheduler(name).model_dump(exclude=ignore):
            return False
    return True


def _consumer_state(consumer: QueueConsumer) -> dict[str, Any]:
    return {"state": consumer.state.value, "error": consumer.last_error, **asdict(consumer.stats)}


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def run(config: Path | None) -> int:
    settings = load_settings(config)
    configure_logging(settings.logging, secrets=secrets_of(settings))
    return Daemon(settings).run()
