"""The report planner (SPEC §3): due report schedules → report tasks.

A report schedule with a cron runs at each fire; one without is a one-off whose deadline is cleared once its
task is pushed. A report whose previous task is still active is not queued again: the schedule waits until
that task is finished (or its lease runs out and the sweep fails it).
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from katsched.clock import Clock
from katsched.core.deadlines import next_cron_fire, validate_cron
from katsched.core.hashing import task_hash
from katsched.core.models import ReportTask, Schedule
from katsched.core.ports import (
    PushResult,
    ScheduleClaim,
    ScheduleLink,
    ScheduleStore,
    TaskDraft,
    TaskStore,
)
from katsched.core.ranking import RankFacts, ranker_named
from katsched.core.rules import already_active
from katsched.schedulers.common import (
    INVALID_DATA,
    Planned,
    claimed,
    deferring,
    held_by,
    push_and_record,
)
from katsched.schedulers.summary import PlanSummary

logger = logging.getLogger("katsched.schedulers")

SCHEDULER = "report"
INVALID_CRON = "invalid_cron"


@dataclass(frozen=True)
class ReportPlannerSettings:
    dispatch_timeout: timedelta = timedelta(minutes=10)
    run_timeout: timedelta = timedelta(minutes=30)
    ranker: str = "created_at"
    reschedule_batch_size: int = 500
    claim_lease: timedelta = timedelta(minutes=2)  # how long a claimed batch of due schedules is held

    def __post_init__(self) -> None:
        ranker_named(self.ranker)
        if self.reschedule_batch_size < 1:
            raise ValueError("reschedule_batch_size must be at least 1")


@dataclass(frozen=True)
class _Due:
    schedule: Schedule
    report: ReportTask
    hash: str


class ReportPlanner:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        schedules: ScheduleStore,
        clock: Clock,
        settings: ReportPlannerSettings | None = None,
    ) -> None:
        self._tasks = tasks
        self._schedules = schedules
        self._clock = clock
        self._settings = settings or ReportPlannerSettings()
        self._rank = ranker_named(self._settings.ranker)

    def reschedule_due(self, organisation_id: str) -> PlanSummary:
        """Due report schedules, oldest deadline first, a batch at a time until none is left."""
        summary = PlanSummary("report.reschedule")
        size, lease = self._settings.reschedule_batch_size, self._settings.claim_lease
        with deferring(summary.planner, organisation_id):
            while True:
                with claimed(self._schedules, SCHEDULER, size, lease, organisation_id) as claim:
                    still_due = self._reschedule_batch(claim, summary)
                if len(claim.schedules) < size or still_due:  # those left due would only come back first
                    break
        return summary

    def _reschedule_batch(self, claim: ScheduleClaim, summary: PlanSummary) -> int:
        """Push or defer each claimed schedule still held; how many are still due afterwards."""
        now = self._clock.now()
        held = held_by(self._schedules, claim, self._settings.claim_lease, summary.planner)
        runnable = self._parse([schedule for schedule in claim.schedules if schedule.id in held], summary)
        latest = self._tasks.latest_by_hash(SCHEDULER, {item.hash for item in runnable})
        planned: list[Planned] = []
        planned_items: list[_Due] = []
        waiting: list[_Due] = []
        for item in runnable:
            previous = latest.get(item.hash)
            decision = already_active(
                previous.status if previous is not None else None,
                previous.modified_at if previous is not None else None,
                now,
                self._settings.dispatch_timeout,
                self._settings.run_timeout,
            )
            if decision.runs:
                planned.append(self._planned(item, decision.reason, now))
                planned_items.append(item)
                continue
            summary.skip(decision.reason)
            logger.debug(
                "task_skipped scheduler=report schedule_id=%s reason=%s", item.schedule.id, decision.reason
            )
            waiting.append(item)
        outcomes = push_and_record(self._tasks, planned, summary)
        full = 0  # a full queue: these stay due and are tried again at the next run, oldest first
        for item, outcome in zip(planned_items, outcomes, strict=True):
            if outcome.result is PushResult.QUEUE_FULL:
                full += 1
            elif outcome.result is PushResult.ALREADY_QUEUED:
                waiting.append(item)
        return full + self._wait(waiting, now)

    def _parse(self, due: Sequence[Schedule], summary: PlanSummary) -> list[_Due]:
        """The due schedules that can run; the others are disabled, with the reason."""
        runnable: list[_Due] = []
        disabled: dict[uuid.UUID, str] = {}
        for schedule in due:
            try:
                report = ReportTask.model_validate(schedule.data)
                if schedule.schedule:
                    validate_cron(schedule.schedule)
            except ValidationError:
                disabled[schedule.id] = INVALID_DATA
                continue
            except ValueError:
                disabled[schedule.id] = INVALID_CRON
                continue
            runnable.append(_Due(schedule, report, task_hash(report)))
        self._schedules.disable(disabled.keys())
        for schedule_id, reason in disabled.items():
            summary.disable(reason)
            logger.info("schedule_disabled schedule_id=%s scheduler=report reason=%s", schedule_id, reason)
        return runnable

    def _planned(self, item: _Due, reason: str, now: datetime) -> Planned:
        cron = item.schedule.schedule
        link = ScheduleLink(item.schedule.id, next_cron_fire(cron, now) if cron else None)
        priority = self._rank(RankFacts(created_at=now), now)
        data = item.report.model_dump(mode="json")
        return Planned(
            TaskDraft(SCHEDULER, item.schedule.organisation, priority, data, schedule=link), reason
        )

    def _wait(self, waiting: Sequence[_Due], now: datetime) -> int:
        """A schedule whose report is active (or queued) already: one with a cron moves to its next fire, as
        the active task covers this one; a one-off stays due until that task is done. How many stay due."""
        deadlines = {
            item.schedule.id: next_cron_fire(item.schedule.schedule, now)
            for item in waiting
            if item.schedule.schedule
        }
        self._schedules.set_deadlines(deadlines)
        return len(waiting) - len(deadlines)
