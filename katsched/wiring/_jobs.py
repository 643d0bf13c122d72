"""The recurring jobs of `katsched.wiring`: each organisation's job set over the planners; the intervals;
which jobs must run once across every daemon on the database.

Once-only: the stalled-task sweep and retention (each walks the whole database), new-plugin enumeration and
re-ranking (walks over an organisation that two daemons would repeat, with the same Katalogus and Octopoes
calls). They share one lease, so a single daemon runs them all and the others skip them without a call;
the KAT calls do not grow with the number of daemons. Not once-only: rescheduling (each due schedule is
claimed in the database, so the daemons share that work), the organisations refresh and the health probes
(each daemon needs its own view)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from katsched.config import RecurringSettings
    from katsched.recurring import GlobalJob, JobResult, OrganisationJob, Recurring
    from katsched.schedulers.summary import PlanSummary
    from katsched.wiring import Core, Planners

log = logging.getLogger("katsched.daemon")

ONCE_ONLY_LEASE = "once-only"
ONCE_ONLY_JOBS = frozenset({"lease_sweep", "retention", "boefje.new_plugins", "boefje.rerank"})


def _lease(name: str) -> str | None:
    return ONCE_ONLY_LEASE if name in ONCE_ONLY_JOBS else None


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
    from katsched.recurring import OrganisationJob

    boefje, report = planners.boefje, planners.report

    def rerank(organisation: str) -> JobResult:
        changed = boefje.rerank_queued(organisation)
        return f"tasks_reranked scheduler=boefje org={organisation} changed={changed}" if changed else None

    intervals = job_intervals(recurring)
    bodies: dict[str, Callable[[str], JobResult]] = {
        "boefje.reschedule": lambda o: reported(boefje.reschedule_due(o), o),
        "boefje.rerank": rerank,
        "report.reschedule": lambda o: reported(report.reschedule_due(o), o),
    }
    if objects_known:
        bodies["boefje.new_plugins"] = lambda o: reported(boefje.plan_new_plugins(o), o)
    return [OrganisationJob(name, intervals[name], body, _lease(name)) for name, body in bodies.items()]


def job_intervals(recurring: RecurringSettings) -> dict[str, float]:
    """Interval per job name, at the start and for a SIGHUP reload."""
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


def build_recurring(
    core: Core,
    recurring: RecurringSettings,
    global_jobs: Mapping[str, Callable[[], JobResult]],
    *,
    holder: str,
) -> Recurring:
    """The APScheduler job sets: one per organisation of the catalogue, plus `global_jobs` by name (the
    "metrics" job runs once at the start, so that `/health` knows the services soon). `recurring`: the
    settings as they are now (a SIGHUP reload changes them; a restarted scheduler takes the new ones).
    `holder`: this daemon's instance id, the holder of the once-only lease while it runs those jobs."""
    from katsched.job_leases import LeaseKeeper
    from katsched.recurring import GlobalJob, Recurring

    intervals = job_intervals(recurring)
    jobs: list[GlobalJob] = [
        GlobalJob(name, intervals[name], run, first_at_start=name == "metrics", lease=_lease(name))
        for name, run in global_jobs.items()
    ]
    duration = timedelta(seconds=core.settings.cluster.lease_duration)
    leases = LeaseKeeper(core.job_leases, holder, [ONCE_ONLY_LEASE], duration, core.clock)
    return Recurring(
        organisations=lambda: [org.id for org in core.services.catalog.organisations()],
        organisation_jobs=organisation_jobs(core.planners, recurring, bool(core.settings.octopoes.url)),
        global_jobs=jobs,
        clock=core.clock,
        organisations_interval=recurring.organisations_refresh_interval,
        jitter=recurring.jitter,
        leases=leases,
    )
