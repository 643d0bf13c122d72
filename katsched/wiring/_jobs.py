"""The recurring jobs of `katsched.wiring`: each organisation's job set over the planners; the intervals."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from katsched.config import RecurringSettings
    from katsched.recurring import GlobalJob, JobResult, OrganisationJob, Recurring
    from katsched.schedulers.summary import PlanSummary
    from katsched.wiring import Core, Planners

log = logging.getLogger("katsched.daemon")


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
    return [OrganisationJob(name, intervals[name], body) for name, body in bodies.items()]


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
    core: Core, recurring: RecurringSettings, global_jobs: Mapping[str, Callable[[], JobResult]]
) -> Recurring:
    """The APScheduler job sets: one per organisation of the catalogue, plus `global_jobs` by name (the
    "metrics" job runs once at the start, so that `/health` knows the services soon). `recurring`: the
    settings as they are now (a SIGHUP reload changes them; a restarted scheduler takes the new ones)."""
    from katsched.recurring import GlobalJob, Recurring

    intervals = job_intervals(recurring)
    jobs: list[GlobalJob] = [
        GlobalJob(name, intervals[name], run, first_at_start=name == "metrics")
        for name, run in global_jobs.items()
    ]
    return Recurring(
        organisations=lambda: [org.id for org in core.services.catalog.organisations()],
        organisation_jobs=organisation_jobs(core.planners, recurring, bool(core.settings.octopoes.url)),
        global_jobs=jobs,
        clock=core.clock,
        organisations_interval=recurring.organisations_refresh_interval,
        jitter=recurring.jitter,
    )
