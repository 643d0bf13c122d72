"""The boefje planner's decisions, pure: candidates, whether they run, their schedules' next deadlines.

`BoefjePlanner` gathers the facts through the ports and applies what these functions decide.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from katsched.core.deadlines import Uniform, next_deadline
from katsched.core.hashing import task_hash
from katsched.core.models import (
    OOI,
    Boefje,
    BoefjeMeta,
    BoefjeTask,
    MutationOperation,
    Plugin,
    Schedule,
    Task,
    TaskStatus,
)
from katsched.core.ports import DecisionRecord, NewRank, PushOutcome, PushResult, ScheduleLink
from katsched.core.ranking import Ranker, RankFacts, ranker_named, rerank_due_at
from katsched.core.rules import (
    Action,
    BoefjeRunFacts,
    Decision,
    Reason,
    RunPolicy,
    boefje_permission,
    creates_schedule,
    decide_boefje_run,
    run_on_allows,
    when_last_ran,
)

logger = logging.getLogger("katsched.schedulers")

MAX_SCAN_LEVEL = 4


@dataclass(frozen=True)
class BoefjePlannerSettings:
    """What the planner uses of `[schedulers.boefje]` and `[recurring]`."""

    grace_period: timedelta = timedelta(days=1)
    dispatch_timeout: timedelta = timedelta(minutes=10)
    run_timeout: timedelta = timedelta(minutes=30)
    ranker: str = "staleness"
    deadline_jitter: timedelta = timedelta(0)
    reschedule_batch_size: int = 500
    configs_cache_ttl: timedelta = timedelta(seconds=30)  # Katalogus configs for cross-organisation dedup
    lookup_concurrency: int = 8  # Bytes and Octopoes look-ups at once
    claim_lease: timedelta = timedelta(minutes=2)  # how long a claimed batch of due schedules is held

    def __post_init__(self) -> None:
        ranker_named(self.ranker)
        if self.reschedule_batch_size < 1:
            raise ValueError("reschedule_batch_size must be at least 1")

    @property
    def policy(self) -> RunPolicy:
        return RunPolicy(self.grace_period, self.dispatch_timeout, self.run_timeout)

    @property
    def rank(self) -> Ranker:
        return ranker_named(self.ranker)


@dataclass(frozen=True)
class Candidate:
    """One (boefje, object, organisation) that a trigger proposes to run, with the task it would push."""

    plugin: Plugin
    organisation: str
    task: BoefjeTask
    hash: str
    ooi: OOI | None  # the object as the trigger knows it; None for a boefje that takes none
    operation: MutationOperation | None  # None when the trigger is not a mutation
    schedule: Schedule | None  # the due schedule this candidate comes from
    recurs: bool  # its task joins a schedule (found or created)


def candidate(
    plugin: Plugin,
    organisation: str,
    ooi: OOI | None,
    *,
    input_ooi: str | None = None,
    operation: MutationOperation | None = None,
    schedule: Schedule | None = None,
) -> Candidate:
    reference = ooi.primary_key if ooi is not None else input_ooi
    boefje = Boefje(id=plugin.id, name=plugin.name, version=plugin.version, oci_image=plugin.oci_image)
    task = BoefjeTask(boefje=boefje, input_ooi=reference, organization=organisation)
    # A due schedule goes on whatever the plugin's run_on says now, as in the original.
    recurs = schedule is not None or creates_schedule(plugin)
    return Candidate(plugin, organisation, task, task_hash(task), ooi, operation, schedule, recurs)


BytesKey = tuple[str, str | None, str]
"""(organisation, input_ooi, boefje id): a candidate's runs as Bytes files them."""


def bytes_key(item: Candidate) -> BytesKey:
    return (item.organisation, item.task.input_ooi, item.plugin.id)


def precheck(item: Candidate) -> Decision | None:
    """The refusal of the checks that need no history (permission, run_on), so Bytes is not asked in vain."""
    for decision in (boefje_permission(item.plugin, item.ooi), run_on_allows(item.plugin, item.operation)):
        if not decision.runs:
            return decision
    return None


@dataclass(frozen=True)
class Verdict:
    """What the planner decided about a candidate, and the facts it decided on."""

    candidate: Candidate
    decision: Decision
    last_run_at: datetime | None
    latest: Task | None = None  # the newest task with the candidate's hash
    bytes_run: BoefjeMeta | None = None  # Bytes' last run, when it was asked
    outcome: PushOutcome | None = None  # when it ran: what the queue did with its task


def decide(
    item: Candidate, latest: Task | None, in_bytes: BoefjeMeta | None, policy: RunPolicy, now: datetime
) -> Verdict:
    """The candidate's verdict from the gathered facts: the checks that need no history first."""
    refused = precheck(item)
    if refused is not None:
        return Verdict(item, refused, None, latest, in_bytes)
    last_run_at = when_last_ran(latest, in_bytes)
    facts = BoefjeRunFacts(
        plugin=item.plugin,
        ooi=item.ooi,
        operation=item.operation,
        last_run_at=last_run_at,
        latest_status=latest.status if latest is not None else None,
        latest_modified_at=latest.modified_at if latest is not None else None,
    )
    return Verdict(item, decide_boefje_run(facts, policy, now), last_run_at, latest, in_bytes)


def decision_record(verdict: Verdict, now: datetime) -> DecisionRecord:
    """The verdict as the planner's last decision: a run the queue refused counts as skipped, with why."""
    item, decision, outcome = verdict.candidate, verdict.decision, verdict.outcome
    action, reason, task_id = decision.action.value, decision.reason, None
    if outcome is not None and outcome.result is PushResult.PUSHED:
        task_id = outcome.task.id if outcome.task is not None else item.task.id
    elif outcome is not None:
        action, reason = Action.SKIP.value, outcome.result.value
    subject = item.task.input_ooi or ""
    return DecisionRecord(item.organisation, subject, item.plugin.id, "boefje", action, reason, now, task_id)


def disabled_record(schedule: Schedule, reason: str, now: datetime) -> DecisionRecord:
    data = schedule.data
    boefje = data.get("boefje")
    plugin_id = str(boefje.get("id", "")) if isinstance(boefje, dict) else ""
    subject = str(data.get("input_ooi") or "")
    disable = Action.DISABLE.value
    return DecisionRecord(schedule.organisation, subject, plugin_id, "boefje", disable, reason, now)


def needs_bytes(latest: Task | None) -> bool:
    """Bytes is asked for the last run only when our history cannot tell (see `rules.when_last_ran`)."""
    return latest is None or latest.status is TaskStatus.CANCELLED


def rank(
    settings: BoefjePlannerSettings, last_run_at: datetime | None, created_at: datetime, now: datetime
) -> NewRank:
    """The priority and when it changes next, so that re-ranking visits the task only then."""
    facts = RankFacts(last_run_at=last_run_at, created_at=created_at)
    return NewRank(settings.rank(facts, now), rerank_due_at(settings.ranker, facts, now))


def eligible_at(last_run_at: datetime, plugin: Plugin, grace_period: timedelta) -> datetime:
    """When the interval (else grace period) since the last run will have passed, as `rules.interval_elapsed`
    counts it: the deadline of a due schedule that was skipped as too soon."""
    if plugin.interval is not None and plugin.interval > 0:
        return last_run_at + timedelta(minutes=plugin.interval)
    return last_run_at + grace_period


def deadline(
    plugin: Plugin,
    schedule: Schedule | None,
    now: datetime,
    settings: BoefjePlannerSettings,
    uniform: Uniform,
) -> datetime:
    """The next deadline after a push at `now`: the plugin's cron (else the schedule's own), else the plugin's
    interval, else the grace period plus jitter. The original dropped the interval (reference §4.2.7)."""
    cron = plugin.cron or (schedule.schedule if schedule is not None else None)
    try:
        return next_deadline(
            now,
            cron=cron,
            interval_minutes=plugin.interval,
            grace_period=settings.grace_period,
            jitter=settings.deadline_jitter,
            uniform=uniform,
        )
    except ValueError:
        logger.warning("schedule_cron_invalid plugin=%s cron=%r fallback=interval", plugin.id, cron)
        return deadline(plugin.model_copy(update={"cron": None}), None, now, settings, uniform)


def schedule_link(
    item: Candidate, found: Schedule | None, now: datetime, settings: BoefjePlannerSettings, uniform: Uniform
) -> ScheduleLink | None:
    """How the candidate's task joins its schedule: the due one, else the one found by hash, else a new one.
    A disabled schedule is left alone and the task stays without one, as in the original."""
    if not item.recurs:
        return None
    schedule = item.schedule or found
    if schedule is not None and not schedule.enabled:
        return None
    next_at = deadline(item.plugin, schedule, now, settings, uniform)
    return ScheduleLink(schedule.id if schedule is not None else None, next_at, item.plugin.cron)


def deferred_deadline(
    item: Candidate,
    decision: Decision,
    last_run_at: datetime | None,
    now: datetime,
    settings: BoefjePlannerSettings,
    uniform: Uniform,
) -> datetime:
    """Where a due schedule that did not run goes next, so that it leaves the due set instead of being
    looked at every minute and crowding out others (reference §11.1 item 11): too soon → when it may run;
    anything else (its work is active or queued already) → as if that work were this run."""
    too_soon = decision.reason in (Reason.WITHIN_GRACE_PERIOD, Reason.WITHIN_INTERVAL)
    if too_soon and last_run_at is not None:
        return max(eligible_at(last_run_at, item.plugin, settings.grace_period), now)
    return deadline(item.plugin, item.schedule, now, settings, uniform)


def consumed_types(plugin: Plugin) -> list[str]:
    return [plugin.consumes] if isinstance(plugin.consumes, str) else list(plugin.consumes)


def scan_levels(plugin: Plugin) -> range:
    """The object scan levels this boefje may scan (its own level and up)."""
    return range(max(plugin.scan_level or 0, 0), MAX_SCAN_LEVEL + 1)


@dataclass
class MutationCandidates:
    """The candidates of consecutive mutations, and which of them came from which mutation."""

    candidates: list[Candidate] = field(default_factory=list)
    spans: list[tuple[str, int, int]] = field(default_factory=list)  # (organisation, start, end)

    def add(self, organisation: str, candidates: list[Candidate]) -> None:
        if candidates:
            self.spans.append((organisation, len(self.candidates), len(self.candidates) + len(candidates)))
            self.candidates += candidates

    def clear(self) -> None:
        self.candidates, self.spans = [], []
