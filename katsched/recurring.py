"""Recurring jobs on an APScheduler 3 `BackgroundScheduler`: one job set per organisation, plus global jobs.

The job store is APScheduler's in-memory one: our own tables are the durable state (schedules, deadlines,
tasks), so a restart loses nothing by rebuilding the jobs. Organisations come from the catalogue and are
refreshed by a job of their own; each one that appears gets its set of jobs, each one that disappears loses
them. Every job coalesces missed runs, never overlaps itself, and starts at a random offset within its
interval (plus per-run jitter), so a hundred organisations do not hit the database in the same second.

A job that must run once across every daemon on the database names its lease: it runs only while this
daemon holds that lease (see `katsched.job_leases`) and is skipped otherwise, without any I/O. The leases
are renewed by a job of their own, on a thread of its own and without jitter, so that long planning runs
never delay a renewal; a clean stop releases them once the running jobs have finished.

A job that raises is logged (transient failures as a warning, anything else with its traceback) and simply
runs again at its next time; it never stops the scheduler. APScheduler's untyped API stays in this module.
"""

import logging
import math
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from katsched.clock import Clock
from katsched.errors import KatschedError, ServiceUnavailable, StorageUnavailable
from katsched.job_leases import LeaseKeeper

log = logging.getLogger("katsched.recurring")

ORGANISATIONS_JOB = "organisations"
LEASES_JOB = "leases"
LEASES_EXECUTOR = "leases"
MIN_MISFIRE_GRACE = 30.0

JobResult = str | None
"""What a job returns: a line to log at INFO (`planner_run …`), or None when there is nothing to say."""


@dataclass(frozen=True)
class GlobalJob:
    name: str
    interval: float
    run: Callable[[], JobResult]
    first_at_start: bool = False  # run once right away (e.g. health probes), then every interval
    lease: str | None = None  # runs only while this daemon holds the lease of that name


@dataclass(frozen=True)
class OrganisationJob:
    name: str
    interval: float
    run: Callable[[str], JobResult]
    lease: str | None = None


@dataclass(frozen=True)
class JobStats:
    runs: int = 0
    failures: int = 0
    skipped: int = 0  # runs left to the daemon that holds the job's lease
    last_run_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


def job_id(name: str, organisation: str | None = None) -> str:
    return name if organisation is None else f"{name}@{organisation}"


class Recurring:
    """Owns the APScheduler instance. `start()` once; `stop()` once; create a new one to restart."""

    def __init__(
        self,
        *,
        organisations: Callable[[], Iterable[str]],
        organisation_jobs: Sequence[OrganisationJob],
        global_jobs: Sequence[GlobalJob],
        clock: Clock,
        organisations_interval: float,
        jitter: float = 0.0,
        workers: int = 4,
        rand: Callable[[], float] = random.random,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self._fetch_organisations = organisations
        self._organisation_jobs = {job.name: job for job in organisation_jobs}
        refresh = GlobalJob(ORGANISATIONS_JOB, organisations_interval, self._refresh_organisations)
        self._global_jobs = {job.name: job for job in [refresh, *global_jobs]}
        self._leases = leases
        _check_leases(leases, [*organisation_jobs, *global_jobs])
        self._clock = clock
        self._jitter = jitter
        self._rand = rand
        self._lock = threading.RLock()
        self._organisations: set[str] = set()
        self._stats: dict[str, JobStats] = {}
        self._scheduler: Any = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={
                "default": ThreadPoolExecutor(workers, pool_kwargs={"thread_name_prefix": "recurring"}),
                LEASES_EXECUTOR: ThreadPoolExecutor(
                    1, pool_kwargs={"thread_name_prefix": "recurring-leases"}
                ),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
            daemon=True,
        )
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )

    # lifecycle

    def start(self, *, paused: bool = False) -> None:
        """Add the global jobs, fetch the organisations once, and start (a paused scheduler runs nothing)."""
        self._scheduler.start(paused=paused)
        if self._leases is not None:
            self._add_lease_renewal(self._leases)
        for job in self._global_jobs.values():
            self._add(job_id(job.name), job.interval, self._run_global, [job.name], now=job.first_at_start)
        self.sync_organisations()

    def alive(self) -> bool:
        thread = getattr(self._scheduler, "_thread", None)
        return bool(self._scheduler.running) and thread is not None and thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Stop scheduling and wait up to `timeout` seconds for running jobs; whether they all finished.
        The leases are released only when they did: a job still running keeps its lease until it expires."""
        if self._scheduler.running:
            stopper = threading.Thread(target=self._scheduler.shutdown, name="recurring-stop", daemon=True)
            stopper.start()
            stopper.join(timeout)
            if stopper.is_alive():
                log.warning("recurring_stop_timeout timeout=%.1f", timeout)
                return False
        if self._leases is not None:
            self._leases.release()
        return True

    def leases_held(self) -> list[str]:
        """The names of the job leases this daemon holds now."""
        return self._leases.held() if self._leases is not None else []

    # organisations

    def sync_organisations(self) -> None:
        """Add the job set of every new organisation and remove that of every organisation gone."""
        current = set(self._fetch_organisations())
        with self._lock:
            appeared = sorted(current - self._organisations)
            gone = sorted(self._organisations - current)
            for organisation in appeared:
                self._add_organisation(organisation)
            for organisation in gone:
                self._remove_organisation(organisation)
            self._organisations = current
        for organisation in appeared:
            log.info("organisation_added org=%s jobs=%d", organisation, len(self._organisation_jobs))
        for organisation in gone:
            log.info("organisation_removed org=%s", organisation)

    def organisations(self) -> set[str]:
        with self._lock:
            return set(self._organisations)

    def _add_organisation(self, organisation: str) -> None:
        for job in self._organisation_jobs.values():
            self._add(
                job_id(job.name, organisation), job.interval, self._run_organisation, [job.name, organisation]
            )

    def _remove_organisation(self, organisation: str) -> None:
        for name in self._organisation_jobs:
            identifier = job_id(name, organisation)
            if self._scheduler.get_job(identifier) is not None:
                self._scheduler.remove_job(identifier)
            self._stats.pop(identifier, None)

    def _refresh_organisations(self) -> JobResult:
        self.sync_organisations()
        return None

    # jobs

    def _add_lease_renewal(self, leases: LeaseKeeper) -> None:
        """Renewals run at once, then steadily (no jitter) on their own thread."""
        args = [LEASES_JOB, leases.renew, {"job": LEASES_JOB}]
        self._add(
            LEASES_JOB,
            leases.renew_interval,
            self._execute,
            args,
            now=True,
            executor=LEASES_EXECUTOR,
            steady=True,
        )

    def _add(
        self,
        identifier: str,
        interval: float,
        func: Callable[..., None],
        args: list[Any],
        now: bool = False,
        executor: str = "default",
        steady: bool = False,
    ) -> None:
        """`now`: the first run at once rather than at a random offset; `steady`: no jitter."""
        offset = 0.0 if now else self._rand() * interval
        first_run = self._clock.now() + timedelta(seconds=offset)
        # A trigger whose start has just passed fires first a whole interval later: `now` says when.
        at_once = {"next_run_time": first_run} if now else {}
        self._scheduler.add_job(
            func,
            trigger=self._trigger(interval, first_run, jitter=not steady),
            args=args,
            id=identifier,
            name=identifier,
            executor=executor,
            misfire_grace_time=math.ceil(max(interval, MIN_MISFIRE_GRACE)),
            replace_existing=True,
            **at_once,
        )

    def _trigger(self, interval: float, start: datetime, jitter: bool = True) -> Any:
        spread = self._jitter if jitter else 0.0
        return IntervalTrigger(seconds=interval, start_date=start, jitter=spread or None, timezone=UTC)

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self._scheduler.get_jobs())

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: getattr(job, "next_run_time", None) for job in self._scheduler.get_jobs()}

    def run_now(self, identifier: str) -> None:
        """Bring a job's next run forward to now (for operators and tests)."""
        self._scheduler.modify_job(identifier, next_run_time=self._clock.now())
        self._scheduler.wakeup()

    def set_intervals(self, intervals: Mapping[str, float], jitter: float) -> None:
        """Apply new intervals (by job name) and jitter, as a SIGHUP reload does; runs restart from now."""
        self._jitter = jitter
        with self._lock:
            self._global_jobs = {n: _with_interval(j, intervals) for n, j in self._global_jobs.items()}
            self._organisation_jobs = {
                n: _with_interval(j, intervals) for n, j in self._organisation_jobs.items()
            }
            for job in self._scheduler.get_jobs():
                name = job.id.split("@", 1)[0]
                spec = self._global_jobs.get(name) or self._organisation_jobs.get(name)
                if spec is not None:
                    start = self._clock.now() + timedelta(seconds=self._rand() * spec.interval)
                    self._scheduler.reschedule_job(job.id, trigger=self._trigger(spec.interval, start))

    def stats(self) -> dict[str, JobStats]:
        with self._lock:
            return dict(self._stats)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per job name (an organisation job's instances together): the next run, how many organisations,
        runs, failures and the latest error, as JSON-ready values for the daemon's state row."""
        stats = self.stats()
        result: dict[str, dict[str, Any]] = {}
        for identifier, next_run in sorted(self.next_runs().items()):
            name = identifier.split("@", 1)[0]
            entry = result.setdefault(
                name, {"next_run_at": None, "instances": 0, "runs": 0, "failures": 0, "skipped": 0}
            )
            entry["instances"] += 1
            at = next_run.astimezone(UTC).isoformat() if next_run is not None else None
            if at is not None and (entry["next_run_at"] is None or at < entry["next_run_at"]):
                entry["next_run_at"] = at
            job = stats.get(identifier, JobStats())
            entry["runs"] += job.runs
            entry["failures"] += job.failures
            entry["skipped"] += job.skipped
            if job.last_error_at is not None and job.last_error_at.isoformat() > entry.get(
                "last_error_at", ""
            ):
                entry["last_error_at"] = job.last_error_at.isoformat()
                entry["last_error"] = _one_line(job.last_error or "", 200)
        return result

    def _run_global(self, name: str) -> None:
        job = self._global_jobs[name]
        if self._may_run(job_id(name), job.lease):
            self._execute(job_id(name), lambda: job.run(), {"job": name})

    def _run_organisation(self, name: str, organisation: str) -> None:
        job, identifier = self._organisation_jobs[name], job_id(name, organisation)
        if self._may_run(identifier, job.lease):
            self._execute(identifier, lambda: job.run(organisation), {"job": name, "org": organisation})

    def _may_run(self, identifier: str, lease: str | None) -> bool:
        """Whether a run may go ahead here: its job needs no lease, or this daemon holds it (a skip is
        counted, not logged: it happens on every daemon but one, every interval)."""
        if lease is None or (self._leases is not None and self._leases.holds(lease)):
            return True
        with self._lock:
            stats = self._stats.get(identifier, JobStats())
            self._stats[identifier] = replace(stats, skipped=stats.skipped + 1)
        return False

    def _execute(self, identifier: str, call: Callable[[], JobResult], context: dict[str, str]) -> None:
        where = " ".join(f"{key}={value}" for key, value in context.items())
        started = self._clock.monotonic()
        error: str | None = None
        try:
            result = call()
        except (ServiceUnavailable, StorageUnavailable) as exc:
            error = str(exc)
            log.warning("job_deferred %s error=%s", where, _one_line(error))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            level = logging.WARNING if isinstance(exc, KatschedError) else logging.ERROR
            log.log(level, "job_failed %s error=%s", where, _one_line(error), exc_info=True)
        else:
            if result:
                log.info("%s", result)
            log.debug("job_done %s seconds=%.3f", where, self._clock.monotonic() - started)
        self._record(identifier, error)

    def _record(self, identifier: str, error: str | None) -> None:
        now = self._clock.now()
        with self._lock:
            stats = self._stats.get(identifier, JobStats())
            stats = replace(stats, runs=stats.runs + 1, last_run_at=now)
            if error is not None:
                stats = replace(stats, failures=stats.failures + 1, last_error=error, last_error_at=now)
            self._stats[identifier] = stats

    def _on_event(self, event: Any) -> None:
        """Only what escapes `_execute` (BaseException) and what never ran arrives here."""
        if event.code == EVENT_JOB_ERROR:
            log.error("job_crashed job=%s error=%r", event.job_id, event.exception)
        elif event.code == EVENT_JOB_MISSED:
            log.warning("job_missed job=%s scheduled_at=%s", event.job_id, event.scheduled_run_time)
        else:
            log.info("job_still_running job=%s skipped_run_at=%s", event.job_id, event.scheduled_run_times)


J = TypeVar("J", GlobalJob, OrganisationJob)


def _check_leases(leases: LeaseKeeper | None, jobs: Sequence[GlobalJob | OrganisationJob]) -> None:
    """A job naming a lease nobody takes would never run: refuse it at the start, loudly."""
    known = set(leases.names) if leases is not None else set()
    for job in jobs:
        if job.lease is not None and job.lease not in known:
            raise ValueError(
                f"job {job.name!r} needs lease {job.lease!r}, which this scheduler does not take"
            )


def _with_interval(job: J, intervals: Mapping[str, float]) -> J:
    return replace(job, interval=intervals.get(job.name, job.interval))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
