"""The daemon's lifecycle: it has `katsched.wiring` build every component from Settings, starts them in
order, supervises them, and stops them on a signal.

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
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from katsched import wiring
from katsched.api.server import ApiServer, bind
from katsched.clock import Clock, SystemClock
from katsched.config import Settings, load_settings
from katsched.core.models import SchedulerKind
from katsched.errors import ConfigError, KatschedError
from katsched.intake import QueueConsumer
from katsched.logs import configure_logging, secrets_of
from katsched.recurring import JobResult, Recurring
from katsched.schedulers.sweeps import RetentionPolicy, prune_retention, sweep_stalled
from katsched.supervisor import (
    Component,
    Fatal,
    Signals,
    Supervised,
    Supervisor,
    flush_logs,
    freeze_start_up_objects,
    log_thread_crashes,
)
from katsched.systemd import Notifier

if TYPE_CHECKING:
    from katsched.store.sqlite_lock import SqliteDaemonLock

log = logging.getLogger("katsched.daemon")

DRAIN_TIMEOUT = 20.0  # below the unit's TimeoutStopSec=30, so systemd never has to SIGKILL
TICK = 1.0
RELOAD_SAFE = ("logging", "recurring", "retention")


class Daemon:
    """Everything it runs is built by `katsched.wiring` at the start; until then `core` is None."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, notifier: Notifier | None = None
    ) -> None:
        self.settings = settings
        self.config_path = settings.config_path
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.signals = Signals("daemon")
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}"
        self.core: wiring.Core | None = None
        self.supervisor: Supervisor | None = None
        self.recurring: Recurring | None = None
        self.consumers: dict[str, QueueConsumer] = {}
        self.health: dict[str, str] = {}
        self.swept_total = 0
        self.api_address: str | None = None
        self.database_lock: SqliteDaemonLock | None = None

    @property
    def started(self) -> wiring.Core:
        if self.core is None:
            raise RuntimeError("the daemon has not built its components yet")
        return self.core

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
        hostname, pid = socket.gethostname(), os.getpid()
        # First, before the port and the store: a second daemon on one SQLite file is told who holds it.
        self.database_lock = wiring.hold_database(self.settings, hostname, pid, self.clock.now())
        if self.settings.api.enabled:  # a port in use ends the start at once, before the store is touched
            bind(self.settings.api.host, self.settings.api.port).close()
        engine = wiring.open_engine(self.settings, serving=True)
        self.core = wiring.build_core(self.settings, engine, self.clock, self._known_organisations)
        self.core.register_daemon(self.instance_id, hostname, pid, sole=self.database_lock is not None)
        self.supervisor = Supervisor(self._slots(), clock=self.clock)
        self.supervisor.start_all()
        log.info(
            "daemon_ready database=%s revision=%s components=%s",
            engine.url.render_as_string(hide_password=True),
            self.core.schema_revision(),
            ",".join(slot.name for slot in self.supervisor.slots),
        )
        freeze_start_up_objects()
        self.notifier.ready(self._status_line())
        self.heartbeat()

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
        """Intake first, then the recurring jobs, then the API and the log's checkpoints, within
        DRAIN_TIMEOUT; then the store."""
        self.notifier.stopping()
        clean = True
        if self.supervisor is not None:
            log.info("daemon_draining timeout=%.0f", DRAIN_TIMEOUT)
            names = [slot.name for slot in self.supervisor.slots]
            order = [n for n in names if n.startswith("intake-")] + [
                n for n in ("recurring", "api", "wal-checkpoint") if n in names
            ]
            clean = self.supervisor.stop_all(DRAIN_TIMEOUT, order=order)
            self._write_state(stopped=True)
        if self.core is not None:
            self.core.close()
        if self.database_lock is not None:
            self.database_lock.release()
        log.info("daemon_stopped clean=%s exit=%d", str(clean).lower(), code)
        if not clean:
            # A job or handler still runs past the bound: its transaction is rolled back when the process
            # ends, and it is redone at the next start. Exiting now keeps the promised bound.
            flush_logs()
            os._exit(code)
        return code

    # components, built by `katsched.wiring`; the slots rebuild them after a death

    def _slots(self) -> list[Supervised]:
        slots = []
        if self.settings.api.enabled:
            slots.append(Supervised("api", self._new_api))
        slots.append(Supervised("recurring", self._new_recurring))
        for queue, build in wiring.consumers(self.started).items():
            slots.append(Supervised(f"intake-{queue}", self._consumer_factory(queue, build)))
        if wiring.wal_checkpointer(self.settings) is not None:
            slots.append(Supervised("wal-checkpoint", self._new_wal_checkpointer))
        return slots

    def _consumer_factory(self, queue: str, build: Callable[[], QueueConsumer]) -> Callable[[], Component]:
        def new_consumer() -> Component:
            self.consumers[queue] = build()
            return ConsumerComponent(self.consumers[queue], self.clock)

        return new_consumer

    def _new_api(self) -> Component:
        app = wiring.build_app(
            self.started, health=lambda: self.health, intake=self.intake_states, instance=self.instance_id
        )
        server = ApiServer(app, self.settings.api.host, self.settings.api.port)
        self.api_address = f"{server.host}:{server.port}"
        return ApiComponent(server)

    def _new_wal_checkpointer(self) -> Component:
        checkpointer = wiring.wal_checkpointer(self.settings)
        assert checkpointer is not None  # the slot exists only for a SQLite file
        return checkpointer

    def _new_recurring(self) -> Recurring:
        jobs = {"lease_sweep": self.sweep, "retention": self.prune, "metrics": self.refresh_metrics}
        self.recurring = wiring.build_recurring(
            self.started, self.settings.recurring, jobs, holder=self.instance_id
        )
        return self.recurring

    # the global jobs

    def sweep(self) -> JobResult:
        summary = sweep_stalled(self.started.housekeeping, self.clock, wiring.lease_timeouts(self.settings))
        self.swept_total += summary.total
        return summary.log_line() if summary.total else None

    def prune(self) -> JobResult:
        retention = self.settings.retention
        policy = RetentionPolicy(retention.tasks_days, retention.history_days, retention.batch_size)
        summary = prune_retention(self.started.housekeeping, self.clock, policy)
        return summary.log_line() if summary.tasks or summary.history or summary.daemons else None

    def refresh_metrics(self) -> JobResult:
        """Ask each configured KAT service whether it is healthy (network I/O: on a job thread, never on the
        supervising main thread)."""
        health = {}
        for name, check in self.started.services.checks.items():
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
        if self.core is None:
            return
        store = self.core.daemon_states
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
            "leases": recurring.leases_held() if recurring is not None else [],
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
        return self.core.planners.unplanned.counts() if self.core is not None else {}

    def _known_organisations(self) -> set[str]:
        """The organisations the recurring jobs last found in the catalogue (empty before the first look)."""
        return self.recurring.organisations() if self.recurring is not None else set()

    def _service_states(self) -> dict[str, str]:
        states = {"database": "ok"}
        checks = self.core.services.checks if self.core is not None else {}
        for name in wiring.KAT_SERVICES:
            if name in checks:
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
                wiring.job_intervals(self.settings.recurring), self.settings.recurring.jitter
            )
        log.info("config_reloaded restart_needed_for=%s", ",".join(needs_restart) or "-")
        self.notifier.ready(self._status_line())


class ConsumerComponent:
    """A RabbitMQ consumer as the supervisor sees it."""

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
    """The HTTP server as the supervisor sees it."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server

    def start(self) -> None:
        self.server.start()

    def alive(self) -> bool:
        return self.server.is_alive()

    def stop(self, timeout: float) -> bool:
        self.server.stop(timeout)
        return not self.server.is_alive()


def _only_lease_changes(old: Settings, new: Settings) -> bool:
    """Only the lease settings differ (the sweep reads them on every run; the planners keep theirs)."""
    ignore = {"dispatch_timeout", "run_timeout", "on_dispatch_expiry", "max_attempts"}
    for kind in SchedulerKind:
        if old.scheduler(kind).model_dump(exclude=ignore) != new.scheduler(kind).model_dump(exclude=ignore):
            return False
    return True


def _consumer_state(consumer: QueueConsumer) -> dict[str, Any]:
    return {"state": consumer.state.value, "error": consumer.last_error, **asdict(consumer.stats)}


def run(config: Path | None) -> int:
    settings = load_settings(config)
    configure_logging(settings.logging, secrets=secrets_of(settings))
    return Daemon(settings).run()
