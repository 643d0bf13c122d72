"""Recurring jobs: a job set per organisation, global jobs, and failures that never stop the scheduler."""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from katsched.errors import InvalidValue, ServiceUnavailable, StorageUnavailable
from katsched.job_leases import LeaseKeeper
from katsched.recurring import GlobalJob, JobResult, OrganisationJob, Recurring, job_id
from katsched.store.engine import build_engine, write
from katsched.testing import FakeClock, MemoryJobLeases

HOUR = 3600.0


def wall_clock() -> FakeClock:
    """A fake clock at the real now: APScheduler keeps its own wall time, and a job brought forward to the
    injected clock's now must be due in APScheduler's time too (a time long past would count as missed)."""
    return FakeClock(datetime.now(UTC))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Calls:
    """A job body that records its calls and can be told to fail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.failures: list[BaseException] = []

    def __call__(self, organisation: str = "-") -> JobResult:
        with self.lock:
            self.calls.append(organisation)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return f"planner_run planner=test created=1 org={organisation}"

    def count(self) -> int:
        with self.lock:
            return len(self.calls)


@pytest.fixture
def organisations() -> list[str]:
    return ["acme", "globex"]


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def recurring(organisations: list[str], calls: Calls) -> Iterator[Recurring]:
    # rand() == 1.0 puts every first run a whole interval away, so nothing runs unless a test says so.
    jobs = Recurring(
        organisations=lambda: list(organisations),
        organisation_jobs=[OrganisationJob("plan", HOUR, calls), OrganisationJob("rank", HOUR, calls)],
        global_jobs=[GlobalJob("sweep", HOUR, calls)],
        clock=wall_clock(),
        organisations_interval=HOUR,
        jitter=5,
        rand=lambda: 1.0,
    )
    jobs.start()
    yield jobs
    jobs.stop(timeout=10)


def test_each_organisation_gets_its_job_set_beside_the_global_jobs(recurring: Recurring) -> None:
    assert recurring.job_ids() == sorted(
        ["organisations", "sweep", "plan@acme", "rank@acme", "plan@globex", "rank@globex"]
    )
    assert recurring.organisations() == {"acme", "globex"}
    assert recurring.alive()


def test_organisations_that_appear_or_disappear_add_or_remove_their_jobs(
    recurring: Recurring, organisations: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "katsched.recurring")
    organisations.remove("acme")
    organisations.append("initech")
    recurring.sync_organisations()
    assert recurring.job_ids() == sorted(
        ["organisations", "sweep", "plan@globex", "rank@globex", "plan@initech", "rank@initech"]
    )
    assert "organisation_added org=initech jobs=2" in caplog.text
    assert "organisation_removed org=acme" in caplog.text


def test_the_refresh_job_follows_the_catalogue(recurring: Recurring, organisations: list[str]) -> None:
    organisations.append("initech")
    recurring.run_now("organisations")
    wait_until(lambda: "plan@initech" in recurring.job_ids())


def test_a_catalogue_outage_keeps_the_current_job_sets(
    organisations: list[str], calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    available = threading.Event()
    available.set()

    def catalogue() -> list[str]:
        if not available.is_set():
            raise ServiceUnavailable("katalogus GET /v1/organisations: connection refused")
        return list(organisations)

    jobs = Recurring(
        organisations=catalogue,
        organisation_jobs=[OrganisationJob("plan", HOUR, calls)],
        global_jobs=[],
        clock=wall_clock(),
        organisations_interval=HOUR,
        rand=lambda: 1.0,
    )
    jobs.start()
    try:
        available.clear()
        jobs.run_now("organisations")
        wait_until(lambda: jobs.stats().get("organisations") is not None)
        assert jobs.job_ids() == ["organisations", "plan@acme", "plan@globex"]
        assert "job_deferred job=organisations error=katalogus GET /v1/organisations" in caplog.text
    finally:
        jobs.stop(timeout=10)


def test_a_job_that_raises_is_logged_and_runs_again_at_its_next_time(
    recurring: Recurring, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "katsched.recurring")
    calls.failures.append(RuntimeError("a bug in the planner"))
    recurring.run_now("plan@acme")
    wait_until(lambda: recurring.stats().get("plan@acme") is not None)

    record = next(r for r in caplog.records if r.getMessage().startswith("job_failed"))
    assert record.getMessage() == "job_failed job=plan org=acme error=RuntimeError: a bug in the planner"
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert recurring.alive()
    next_run = recurring.next_runs()["plan@acme"]
    assert next_run is not None and next_run > datetime.now(UTC) + timedelta(minutes=59)

    recurring.run_now("plan@acme")
    wait_until(lambda: recurring.stats()["plan@acme"].runs == 2)
    stats = recurring.stats()["plan@acme"]
    assert (stats.runs, stats.failures, stats.last_error) == (2, 1, "RuntimeError: a bug in the planner")
    assert "planner_run planner=test created=1 org=acme" in caplog.text


def test_a_transient_failure_is_a_one_line_warning(
    recurring: Recurring, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    calls.failures.append(ServiceUnavailable("katalogus GET /v1/organisations/acme/plugins: 503"))
    recurring.run_now("plan@acme")
    wait_until(lambda: recurring.stats().get("plan@acme") is not None)
    [record] = [r for r in caplog.records if r.getMessage().startswith("job_deferred")]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "org=acme" in record.getMessage()


def test_failures_are_logged_by_the_error_tree(
    recurring: Recurring, calls: Calls, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Transient: a one-line deferral. The caller's value: a warning. A SQL bug: ERROR with its traceback."""
    engine = build_engine(f"sqlite:///{tmp_path / 'bug.db'}")
    try:
        with write(engine) as connection:
            connection.execute(text("SELECT 1 FROM no_such_table"))
    except SQLAlchemyError as error:
        sql_bug = error
    engine.dispose()
    failures = [StorageUnavailable("database error: database is locked"), InvalidValue("a NUL"), sql_bug]
    calls.failures.extend(failures)
    for runs in range(1, 4):
        recurring.run_now("plan@acme")
        wait_until(lambda runs=runs: getattr(recurring.stats().get("plan@acme"), "runs", 0) == runs)
    lines = {r.getMessage().split(" ", 1)[0]: r for r in caplog.records if r.name == "katsched.recurring"}
    assert [r.levelno for r in caplog.records if r.getMessage().startswith("job_")] == [
        logging.WARNING,
        logging.WARNING,
        logging.ERROR,
    ]
    assert lines["job_deferred"].exc_info is None
    failed = [r for r in caplog.records if r.getMessage().startswith("job_failed")]
    assert "InvalidValue" in failed[0].getMessage() and failed[0].levelno == logging.WARNING
    assert "no such table" in failed[1].getMessage() and failed[1].exc_info is not None


def test_jobs_coalesce_never_overlap_and_are_jittered(recurring: Recurring) -> None:
    job = recurring._scheduler.get_job("plan@acme")
    assert job.coalesce is True
    assert job.max_instances == 1
    assert job.misfire_grace_time == HOUR
    assert job.trigger.jitter == 5
    assert job.trigger.interval == timedelta(hours=1)


def test_first_runs_are_spread_over_the_interval_from_the_injected_clock(calls: Calls) -> None:
    offsets = iter([1.0, 0.1, 0.5, 0.9])  # the refresh job first, then one per organisation
    # A day ahead of the real time: every first run is then exactly the clock's now plus its offset.
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(days=1))
    jobs = Recurring(
        organisations=lambda: ["a", "b", "c"],
        organisation_jobs=[OrganisationJob("plan", HOUR, calls)],
        global_jobs=[],
        clock=clock,
        organisations_interval=HOUR,
        rand=lambda: next(offsets, 1.0),
    )
    jobs.start(paused=True)
    try:
        runs = jobs.next_runs()
        first = [runs[job_id("plan", org)] for org in "abc"]
        start = clock.now()
        assert first == [
            start + timedelta(minutes=6),
            start + timedelta(minutes=30),
            start + timedelta(minutes=54),
        ]
        assert runs["organisations"] == start + timedelta(hours=1)
    finally:
        jobs.stop(timeout=10)


def test_job_durations_are_read_from_the_injected_clock(
    calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    clock = wall_clock()

    def slow_job(organisation: str) -> JobResult:
        clock.advance(seconds=2.5)
        return None

    jobs = Recurring(
        organisations=lambda: ["acme"],
        organisation_jobs=[OrganisationJob("plan", HOUR, slow_job)],
        global_jobs=[],
        clock=clock,
        organisations_interval=HOUR,
        rand=lambda: 1.0,
    )
    caplog.set_level(logging.DEBUG, "katsched.recurring")
    jobs.start()
    try:
        jobs.run_now("plan@acme")
        wait_until(lambda: jobs.stats().get("plan@acme") is not None)
        assert "job_done job=plan org=acme seconds=2.500" in caplog.text
        assert jobs.stats()["plan@acme"].last_run_at == clock.now()
    finally:
        jobs.stop(timeout=10)


def test_new_intervals_apply_to_every_job_of_that_name(recurring: Recurring) -> None:
    recurring.set_intervals({"plan": 120.0}, jitter=0)
    assert recurring._scheduler.get_job("plan@acme").trigger.interval == timedelta(seconds=120)
    assert recurring._scheduler.get_job("rank@acme").trigger.interval == timedelta(hours=1)


def test_summary_groups_organisation_jobs_for_the_dashboard(recurring: Recurring) -> None:
    summary = recurring.summary()
    assert summary["plan"]["instances"] == 2
    assert summary["sweep"]["instances"] == 1
    assert datetime.fromisoformat(summary["plan"]["next_run_at"]) > datetime.now(UTC)


def test_stop_ends_the_scheduler_thread(recurring: Recurring) -> None:
    assert recurring.stop(timeout=10)
    assert not recurring.alive()


def leased(clock: FakeClock, store: MemoryJobLeases, holder: str, calls: Calls) -> Recurring:
    """A job set whose "plan" and "sweep" jobs need the "once" lease and whose "refresh" job does not."""
    return Recurring(
        organisations=lambda: ["acme"],
        organisation_jobs=[
            OrganisationJob("plan", HOUR, calls, lease="once"),
            OrganisationJob("look", HOUR, calls),
        ],
        global_jobs=[GlobalJob("sweep", HOUR, calls, lease="once")],
        clock=clock,
        organisations_interval=HOUR,
        jitter=5,
        rand=lambda: 1.0,
        leases=LeaseKeeper(store, holder, ["once"], timedelta(seconds=30), clock),
    )


def test_leased_jobs_run_on_the_daemon_that_holds_the_lease_and_are_skipped_elsewhere(calls: Calls) -> None:
    clock, store = wall_clock(), MemoryJobLeases()
    elsewhere = Calls()
    holder, other = leased(clock, store, "host-a:1", calls), leased(clock, store, "host-b:2", elsewhere)
    holder.start()
    wait_until(lambda: holder.leases_held() == ["once"])
    other.start()
    try:
        wait_until(lambda: other.stats().get("leases") is not None)
        assert other.leases_held() == []
        for jobs in (holder, other):
            for identifier in ("plan@acme", "sweep", "look@acme"):
                jobs.run_now(identifier)
        wait_until(lambda: calls.count() == 3 and elsewhere.count() == 1)
        # A skip is recorded on the job's own thread after `run_now` returns: wait for both to be counted.
        wait_until(lambda: {"plan@acme", "sweep"} <= other.stats().keys())
        wait_until(lambda: other.stats()["plan@acme"].skipped + other.summary()["sweep"]["skipped"] == 2)
        assert other.stats()["plan@acme"].skipped == 1 and other.stats()["plan@acme"].runs == 0
        assert other.summary()["sweep"]["skipped"] == 1
        assert holder.summary()["sweep"] | {"next_run_at": None} == {
            "next_run_at": None,
            "instances": 1,
            "runs": 1,
            "failures": 0,
            "skipped": 0,
        }
    finally:
        holder.stop(timeout=10)
        other.stop(timeout=10)


def test_leases_renew_steadily_on_their_own_thread_and_a_clean_stop_releases_them(calls: Calls) -> None:
    clock, store = wall_clock(), MemoryJobLeases()
    jobs = leased(clock, store, "host-a:1", calls)
    jobs.start()
    try:
        renewal = jobs._scheduler.get_job("leases")
        assert renewal.executor == "leases" and renewal.trigger.jitter is None
        assert renewal.trigger.interval == timedelta(seconds=10)
        wait_until(lambda: jobs.leases_held() == ["once"])
        assert [lease.holder for lease in store.leases()] == ["host-a:1"]
    finally:
        assert jobs.stop(timeout=10)
    assert jobs.leases_held() == [] and store.leases() == []


def test_a_job_that_names_a_lease_nobody_takes_is_refused(calls: Calls) -> None:
    with pytest.raises(ValueError, match="job 'sweep' needs lease 'once'"):
        Recurring(
            organisations=list,
            organisation_jobs=[],
            global_jobs=[GlobalJob("sweep", HOUR, calls, lease="once")],
            clock=wall_clock(),
            organisations_interval=HOUR,
        )


def test_a_job_that_runs_at_the_start_runs_at_once(calls: Calls) -> None:
    jobs = Recurring(
        organisations=list,
        organisation_jobs=[],
        global_jobs=[GlobalJob("probe", HOUR, calls, first_at_start=True)],
        clock=wall_clock(),
        organisations_interval=HOUR,
        rand=lambda: 1.0,
    )
    jobs.start()
    try:
        wait_until(lambda: calls.count() == 1, timeout=5)
    finally:
        jobs.stop(timeout=10)
